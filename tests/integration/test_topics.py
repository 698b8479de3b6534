"""Topics on the real broker: created as app/runtime/topic_specs.py describes them; a wrong one stops the worker at
start."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.runtime.settings import Settings
from app.runtime.topic_specs import topic_specs
from app.runtime.topics_admin import describe

from .conftest import Pipeline

pytestmark = pytest.mark.integration


async def described(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await describe(admin, names)
    finally:
        await admin.close()


async def recreate(bootstrap: str, name: str, partitions: int) -> None:
    """Delete topic ``name`` and create it again with ``partitions`` (as an operator's mistake would)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


@pytest.mark.on_both_brokers  # on Kafka, DescribeConfigs reports every topic's cleanup.policy
def test_worker_refuses_to_start_on_a_co_partitioned_topic_with_another_partition_count(pipeline: Pipeline) -> None:
    specs = topic_specs(Settings.from_env(pipeline.env))
    # The pipeline's ensure_topics created every topic: changelogs compacted, each with its partitions.
    partitions, policies = asyncio.run(described(pipeline.stack.bootstrap, [s.name for s in specs]))
    assert partitions == {s.name: s.partitions for s in specs}
    assert policies == {s.name: s.cleanup_policy for s in specs}
    assert {policies[s.name] for s in specs if s.kind == "changelog"} == {"compact"}

    profile_events = f"{pipeline.app_id}-profile-events"
    asyncio.run(recreate(pipeline.stack.bootstrap, profile_events, 2))
    started = time.monotonic()
    worker, _ = pipeline.start_worker(wait=False)
    worker.proc.wait(timeout=90)
    log = worker.log_path.read_text()
    assert worker.proc.returncode != 0, log
    assert f"topic {profile_events} has 2 partitions, needs 1 (the profiles table is partitioned like it)" in log
    assert "set PERSONA_TOPIC_PARTITIONS=2" in log
    # Refused before Faust started: no agent, no web server, no consumer group.
    assert "Worker" not in log and "Traceback" not in log, log
    print(f"refused in {time.monotonic() - started:.1f} s")
