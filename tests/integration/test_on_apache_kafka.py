"""What only Apache Kafka can prove: compaction, a broker restart on its data, real DescribeConfigs answers.

Tansu keeps topics in memory (a restart forgets them), compacts nothing and answers
DescribeConfigs only with the configs a topic was created with; these tests run on the
Kafka of ``app/embedded/kafka_broker.py`` (``make test-kafka``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.embedded.stack import EmbeddedStack
from app.runtime.settings import Settings
from app.runtime.topic_specs import topic_specs
from tests.integration.conftest import Pipeline, expire_killed_worker, wait_for
from tests.integration.events import event, record
from tests.integration.test_recovery import IDS, all_counts, wait_counts
from tests.integration.test_topics import described
from tests.reliability import oracle
from tests.reliability import test_faults as faults

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.timeout(900)]

#: Topic configs that make a changelog's closed segments cleanable at once: a segment rolls at the
#: first append 100 ms after it opened, and the cleaner takes any partition with 1 % dirty records.
COMPACT_NOW = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}


#: The ``pipeline`` fixture's stack on Apache Kafka (tests/integration/conftest.py).
ON_KAFKA = pytest.mark.parametrize("broker", ["kafka"], indirect=True)


async def admin_call(bootstrap: str, call: str, *args: Any) -> Any:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await getattr(admin, call)(*args)
    finally:
        await admin.close()


def changelog(pipeline: Pipeline, table: str) -> list[oracle.TopicRecord]:
    return oracle.read_topic_sync(pipeline.stack.bootstrap, f"{pipeline.app_id}-{table}-changelog")


def latest_per_key(records: list[oracle.TopicRecord]) -> dict[bytes | None, bytes | None]:
    """Each key's last value, as a compacted topic keeps it."""
    return {r.key: r.value for r in sorted(records, key=lambda r: (r.partition, r.offset))}


@ON_KAFKA
def test_changelog_compacted_after_a_segment_roll_keeps_each_key_s_latest_value_and_restores_the_table(
    pipeline: Pipeline,
) -> None:
    worker, _ = pipeline.start_worker()
    rounds = 6
    for n in range(rounds):  # one changelog write per key and round: several values per key
        pipeline.produce(pipeline.topics.clickstream, [record(event(f"r{n}-{anon}", anon)) for anon in IDS])
        wait_counts(pipeline, n + 1)
    before = changelog(pipeline, "activity")
    latest = latest_per_key(before)
    assert len(before) >= rounds * len(IDS) and len(latest) < len(before) / 2, (len(before), len(latest))

    # Make the closed segments cleanable, then roll the active one with one more write.
    name = f"{pipeline.app_id}-activity-changelog"
    spec = next(s for s in topic_specs(Settings.from_env(pipeline.env)) if s.name == name)
    resource = ConfigResource(ConfigResourceType.TOPIC, name, {**spec.configs, **COMPACT_NOW})
    asyncio.run(admin_call(pipeline.stack.bootstrap, "alter_configs", [resource]))
    time.sleep(1.0)
    rolled_at = max(r.offset for r in before) + 1
    pipeline.produce(pipeline.topics.clickstream, [record(event("roll", IDS[0]))])
    wait_for(lambda: all_counts(pipeline)[IDS[0]] == rounds + 1, 30, lambda: f"{all_counts(pipeline)}")

    def closed_segments() -> list[oracle.TopicRecord]:
        return [r for r in changelog(pipeline, "activity") if r.offset < rolled_at]

    started = time.monotonic()
    wait_for(lambda: len(closed_segments()) == len(latest), 120,
             lambda: f"not compacted: {len(closed_segments())} records before the roll, {len(latest)} keys\n"
             + (pipeline.stack.kafka.process.tail(20) if pipeline.stack.kafka and pipeline.stack.kafka.process
                else ""))
    compacted = closed_segments()
    assert latest_per_key(compacted) == latest  # every key, with its latest value
    print(f"compacted {len(before)} records to {len(compacted)} in {time.monotonic() - started:.1f} s")

    # A worker without local state recovers the table from the compacted changelog alone.
    worker.kill()
    expire_killed_worker(pipeline, worker)
    shutil.rmtree(pipeline.run_dir / "data")
    pipeline.redis.flushdb()
    pipeline.produce(pipeline.topics.clickstream, [record(event(f"after-{anon}", anon)) for anon in IDS])
    _, port = pipeline.start_worker()
    wait_for(lambda: all_counts(pipeline) == {anon: rounds + 1 + (anon == IDS[0]) for anon in IDS}, 60,
             lambda: f"after recovery from the compacted changelog: {all_counts(pipeline)}")
    assert json.loads(pipeline.activity(IDS[1])["counts"]) == {"page_view": rounds + 1}
    wait_for(lambda: pipeline.metric(port, "persona_table_keys", table="activity") == len(IDS), 10,
             lambda: "the table-size gauge does not show the recovered keys")


@ON_KAFKA
def test_worker_refuses_a_changelog_kafka_reports_with_delete_policy_or_the_wrong_partition_count(
    pipeline: Pipeline,
) -> None:
    bootstrap = pipeline.stack.bootstrap
    identity, activity = (f"{pipeline.app_id}-{t}-changelog" for t in ("identity", "activity"))
    # As a changelog auto-created by a first write would be: the broker's defaults (delete, 7 days) ...
    asyncio.run(admin_call(bootstrap, "delete_topics", [identity, activity]))
    wait_for(lambda: not {identity, activity} & set(asyncio.run(admin_call(bootstrap, "list_topics"))), 30,
             lambda: "topics not deleted")
    # ... and a compacted changelog with another partition count than its source topic.
    asyncio.run(admin_call(bootstrap, "create_topics", [
        NewTopic(identity, 1, 1), NewTopic(activity, 2, 1, topic_configs={"cleanup.policy": "compact"})]))
    partitions, policies = asyncio.run(described(bootstrap, [identity, activity]))
    assert (partitions, policies) == ({identity: 1, activity: 2}, {identity: "delete", activity: "compact"})

    worker, _ = pipeline.start_worker(wait=False)
    worker.proc.wait(timeout=90)
    log = worker.log_path.read_text()
    assert worker.proc.returncode != 0, log
    assert f"topic {identity} has cleanup.policy=delete, needs compact (it is the table's only durable copy" in log
    assert f"--entity-name {identity} --add-config cleanup.policy=compact" in log
    assert (f"topic {activity} has 2 partitions, needs 1 (partition p of the activity table's state is fed by "
            f"partition p of {pipeline.topics.clickstream})") in log
    assert "Worker" not in log and "Traceback" not in log, log  # refused before Faust started


BROKER_DOWN_SECONDS = 30


def test_broker_stopped_for_30_s_under_load_and_restarted_on_its_data_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path,
) -> None:
    # A stack of its own: restarting the session's broker would disturb the other tests.
    stack = EmbeddedStack(tmp_path / "stack", "kafka").start()
    run = faults.FaultRun(stack, tmp_path / "run", seed=23)
    sim = faults.simulator(run, seed=23, rate=150)
    figures: dict[str, Any] = {}
    worker_exited = True
    try:
        run.pause(15, 15)
        processed_before = run.pipeline.metric(run.port, "persona_events_processed_total")
        began = time.monotonic()
        stack.restart_broker(down_seconds=BROKER_DOWN_SECONDS)
        run.note("broker stopped and restarted", seconds=round(time.monotonic() - began, 1))
        worker_exited = not run.worker.running
        if not sim.running:  # its sends expire after 30 s (request_timeout_ms): load goes on with another
            run.note("simulator exited while the broker was away", exit_code=sim.proc.returncode)
            sim = faults.simulator(run, seed=24, rate=150)
        run.pause(30, 30)
        worker_exited = worker_exited or not run.worker.running
        sim.stop()
        run.settle()
        processed_after = run.pipeline.metric(run.port, "persona_events_processed_total")
        figures = faults.check_against_oracle(run)
    finally:
        sim.stop()
        run.stop()
        stack.stop()
    print(json.dumps({"faults": run.events, **figures}, indent=1, default=str))
    assert not worker_exited, "the worker exited while the broker was away"
    assert processed_after > processed_before, "nothing processed after the broker came back"
    assert figures["clickstream_records"] > 0
    assert (figures["activity"]["lost_events"], figures["activity"]["applied_twice"]) == (0, 0)
    assert figures["activity"]["differing_ids"] == 0 and figures["activity"]["missing_ids"] == 0
    assert figures["profiles"]["differing_profiles"] == 0
    assert (figures["redis"]["missing"], figures["redis"]["differing"]) == (0, 0)
