"""Fixtures that run a real broker (Tansu, or Apache Kafka) and a real redis-server.

One broker and one Redis serve the whole session; each test gets its own consumer
group, topic names and Redis database through a :class:`Pipeline`, so tests do not
see each other's data.

``stack`` is the Tansu stack. A test marked ``on_both_brokers`` runs twice, on Tansu and on
Apache Kafka (``test[tansu]``, ``test[kafka]``); its Kafka run is marked ``kafka``, which
``make test`` leaves out and ``make test-kafka`` runs. The Kafka stack starts once per
session, at the first test that needs it (``kafka_stack``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from app.embedded.stack import EmbeddedStack, ManagedProcess, api_request, free_port, wait_healthy, worker_argv
from app.identity.pii import keyed_hash
from app.runtime.auth import new_key
from app.runtime.settings import DEV_HMAC_SECRET, Settings, Topics
from app.runtime.topics_admin import ensure_topics_sync

_redis_db = itertools.count(1)

#: The admin API key every Pipeline's workers are configured with; get() and post() send it.
API_KEY = new_key("tests", ["admin"])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``on_both_brokers`` run on Tansu and on Apache Kafka (that run marked ``kafka``)."""
    if "broker" in metafunc.fixturenames and metafunc.definition.get_closest_marker("on_both_brokers"):
        metafunc.parametrize("broker", ["tansu", pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True)


def session_stack(tmp_path_factory: pytest.TempPathFactory, broker: str) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(tmp_path_factory.mktemp(f"stack-{broker}"), broker).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def tansu_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    yield from session_stack(tmp_path_factory, "tansu")


@pytest.fixture(scope="session")
def kafka_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    yield from session_stack(tmp_path_factory, "kafka")


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> str:
    """The broker of this test's ``stack``: ``tansu`` unless the test is parametrised onto ``kafka``."""
    return str(getattr(request, "param", "tansu"))


@pytest.fixture
def stack(broker: str, request: pytest.FixtureRequest) -> EmbeddedStack:
    """The session's stack on this test's broker."""
    return cast("EmbeddedStack", request.getfixturevalue(f"{broker}_stack"))


class Pipeline:
    """One isolated deployment on the shared stack: its own group, topics and Redis db."""

    def __init__(self, stack: EmbeddedStack, run_dir: Path, partitions: int = 1) -> None:
        self.stack = stack
        self.run_dir = run_dir
        self.app_id = f"test-{uuid.uuid4().hex[:8]}"
        self.topics = Topics(**{f: f"{self.app_id}.{getattr(Topics(), f)}" for f in Topics.__dataclass_fields__})
        self.redis_db = next(_redis_db) % 16
        self.redis_url = stack.redis_url.rsplit("/", 1)[0] + f"/{self.redis_db}"
        self.partitions = partitions
        self.workers: list[tuple[ManagedProcess, int]] = []
        #: Settings of this deployment's workers beyond the defaults above (environment names).
        self.env_overrides: dict[str, str] = {}
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.redis.flushdb()
        ensure_topics_sync(Settings.from_env(self.env))

    @property
    def env(self) -> dict[str, str]:
        env = {
            **self.stack.env,  # what `persona up` gives its workers on the embedded stack
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.bootstrap,
            "REDIS_URL": self.redis_url,
            "PERSONA_APP_ID": self.app_id,
            "PERSONA_TOPIC_PARTITIONS": str(self.partitions),
            "PERSONA_DATA_DIR": str(self.run_dir / "data"),
            "PERSONA_REDIS_FLUSH_INTERVAL": "0.1",
            "PERSONA_LOG_LEVEL": "info",
            "PERSONA_API_KEYS": API_KEY.entry,
        }
        env.update({f"PERSONA_TOPIC_{f.upper()}": getattr(self.topics, f) for f in Topics.__dataclass_fields__})
        env.update(self.env_overrides)
        return env

    def start_worker(self, wait: bool = True, instance_id: str | None = None) -> tuple[ManagedProcess, int]:
        port = free_port()
        name = f"{self.app_id}-worker-{len(self.workers) + 1}"
        env = {**self.env, "PERSONA_WEB_PORT": str(port)}
        if instance_id:
            env["PERSONA_WORKER_INSTANCE_ID"] = instance_id
        worker = ManagedProcess.start(name, worker_argv(port), self.run_dir, env)
        self.workers.append((worker, port))
        if wait:
            self.wait_ready(worker, port)
        return worker, port

    def wait_ready(self, worker: ManagedProcess, port: int, timeout: float = 90) -> None:
        wait_healthy(port, timeout, [worker])

    def samples(self, port: int, *names: str) -> list[Any]:
        """The worker's metric samples: all of them, or only those named (``/metrics?name[]=...``)."""
        from prometheus_client.parser import text_string_to_metric_families

        query = "?" + urllib.parse.urlencode([("name[]", name) for name in names]) if names else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=2) as response:
            text = response.read().decode()
        return [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def metric(self, port: int, name: str, **labels: str) -> float:
        return sum(
            sample.value
            for sample in self.samples(port, name)
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def produce(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        asyncio.run(produce(self.stack.bootstrap, topic, records))

    def consume(self, topic: str, expected: int, timeout: float = 60) -> list[Any]:
        return asyncio.run(consume(self.stack.bootstrap, topic, expected, timeout))

    def activity(self, anonymous_id: str) -> dict[str, str]:
        key = keyed_hash(DEV_HMAC_SECRET, "anonymous_id", anonymous_id)
        return cast("dict[str, str]", self.redis.hgetall(f"persona:activity:{key}"))

    def stop(self) -> None:
        for worker, _ in self.workers:
            worker.stop()
        self.redis.flushdb()
        self.redis.close()


@pytest.fixture
def pipeline(stack: EmbeddedStack, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(stack, tmp_path)
    try:
        yield p
    finally:
        p.stop()


async def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key, value=value) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, expected: int, timeout: float) -> list[Any]:
    """Read ``topic`` from the beginning until ``expected`` records or ``timeout``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                out.extend(json.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return out


async def commit_group_offset(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    """Set a consumer group's committed offset, as a crash after a premature commit would leave it."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # Join the group as a member (Tansu refuses commits from non-members), then commit.
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.structs import OffsetAndMetadata

    class SameProtocolAssignor(RoundRobinPartitionAssignor):  # the group's protocol is Faust's
        name = "faust"

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=10000,
        rebalance_timeout_ms=10000,
        partition_assignment_strategy=(SameProtocolAssignor,),
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        for _ in range(120):
            if tp in consumer.assignment():
                break
            await consumer.getmany(timeout_ms=250, max_records=1)
        await consumer.commit({tp: OffsetAndMetadata(offset, "")})
        assert (await consumer.committed(tp)) == offset
    finally:
        await consumer.stop()


def get(port: int, path: str, token: str | None = API_KEY.token) -> tuple[int, Any]:
    """GET a worker's HTTP path with the test key (``token``: another, or ``None`` for no key):
    (status, decoded JSON body); (0, {"error"}) when nothing answers."""
    return request_json(api_request(f"http://127.0.0.1:{port}{path}", token))


def post(
    port: int, path: str, body: bytes, token: str | None = API_KEY.token, content_type: str = "application/json"
) -> tuple[int, Any]:
    """POST ``body`` to a worker's HTTP path, as :func:`get` does."""
    request = api_request(f"http://127.0.0.1:{port}{path}", token, data=body, method="POST")
    request.add_header("Content-Type", content_type)
    return request_json(request)


def request_json(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError as exc:
        return 0, {"error": str(exc)}


def wait_for(condition: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(message())



async def leave_group_for(bootstrap: str, group: str, member_id: str) -> None:
    """Send LeaveGroup on behalf of a killed member, as its session expiry would have removed it.

    The embedded broker never expires a killed member's session, and a restarted worker can be
    left with no partitions while the dead member keeps them (compare nisshi-io/nisshi#625).
    Apache Kafka expires the member after ``session.timeout.ms``.
    """
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.group import LeaveGroupRequest

    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node_id = next(iter(client.cluster.brokers())).nodeId
        await client.send(node_id, LeaveGroupRequest(group, member_id))
    finally:
        await client.close()


def expire_killed_worker(pipeline: Pipeline, worker: ManagedProcess) -> None:
    """Remove a SIGKILLed worker from its group (see :func:`leave_group_for`)."""
    import re

    member_ids = re.findall(r"Joined group '[^']+' \(generation \d+\) with member_id (\S+)", worker.tail(100_000))
    assert member_ids, "the killed worker never joined its group"
    asyncio.run(leave_group_for(pipeline.stack.bootstrap, pipeline.app_id, member_ids[-1]))
