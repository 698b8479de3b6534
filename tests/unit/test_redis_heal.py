"""The Redis self-heal's parts: offered keys never overtake agents' puts, the generation marker, partition walks.

Redis here is fakeredis (the sink's and the marker's logic only); the integration test
(tests/integration/test_redis_heal.py) runs the whole heal on the real Redis and broker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rocksdict import Options, Rdict

from app.runtime import redis_sink
from app.runtime.redis_heal import RedisHealer, generation_key
from app.runtime.redis_sink import RedisSink
from tables.due_index import indexed_key
from tables.exact import ExactTable, watermark_key
from tables.rocksdb_store import RocksDBStore


def sink_on(server: fakeredis.FakeServer, max_pending: int = 100) -> RedisSink:
    s = RedisSink("redis://unused", ttl_seconds=60, max_pending=max_pending)
    s._client = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    return s


@pytest.fixture
def sink() -> RedisSink:
    return sink_on(fakeredis.FakeServer())


def break_pipeline(sink: RedisSink, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RedisConnectionError("down")

    monkeypatch.setattr(sink.client, "pipeline", broken)


async def test_an_agents_put_wins_over_a_rebuilds_offer_of_the_same_key_whichever_came_first(sink: RedisSink) -> None:
    sink.put("k1", {"events": 5})       # put before the offer
    sink.offer("k1", {"events": 4})
    sink.offer("k2", {"events": 3})     # offered, then put after
    sink.put("k2", {"events": 6})
    sink.offer("k3", {"events": 1})     # offered only
    sink.offer_member("persona:segment:vip", "p-1", True)
    sink.set_member("persona:segment:vip", "p-1", False)  # the agent's exit is newer than the rebuild's read
    assert await sink.flush() == 4
    assert [await sink.client.hgetall(k) for k in ("k1", "k2", "k3")] == [{"events": "5"}, {"events": "6"},
                                                                         {"events": "1"}]
    assert await sink.client.smembers("persona:segment:vip") == set()


async def test_offered_keys_survive_a_failed_flush_and_still_lose_to_later_puts(
    sink: RedisSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconnects: list[bool] = []
    sink.on_reconnect = lambda: reconnects.append(True)
    sink.offer("k1", {"events": 1})
    sink.offer("k2", {"events": 1})
    real_pipeline = sink.client.pipeline
    break_pipeline(sink, monkeypatch)
    assert await sink.flush() == 0 and sink.pending == 2 and not sink.healthy
    sink.put("k1", {"events": 2})
    monkeypatch.setattr(sink.client, "pipeline", real_pipeline)
    assert await sink.flush() == 2 and reconnects == [True]
    assert await sink.client.hgetall("k1") == {"events": "2"} and await sink.client.hgetall("k2") == {"events": "1"}


async def test_lag_is_the_age_of_the_oldest_change_not_yet_in_redis(
    sink: RedisSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(redis_sink.time, "monotonic", lambda: clock[0])
    assert sink.lag_seconds() == 0.0
    sink.put("k1", {"n": 1})
    clock[0] = 103.0
    sink.put("k2", {"n": 1})
    assert sink.lag_seconds() == 3.0
    real_pipeline = sink.client.pipeline
    break_pipeline(sink, monkeypatch)
    await sink.flush()
    clock[0] = 110.0
    assert sink.lag_seconds() == 10.0  # a failed flush keeps the age of what it could not write
    monkeypatch.setattr(sink.client, "pipeline", real_pipeline)
    await sink.flush()
    assert sink.lag_seconds() == 0.0


def test_a_skipped_change_marks_the_sink_as_having_dropped_writes() -> None:
    sink = sink_on(fakeredis.FakeServer(), max_pending=1)
    sink.put("k1", {"n": 1})
    assert not sink.dropped
    sink.put("k2", {"n": 1})
    assert sink.dropped and sink.pending == 1


class NoApp:
    tables: dict[str, Any] = {}


def healer_on(server: fakeredis.FakeServer, owned: dict[str, set[int]]) -> RedisHealer:
    healer = RedisHealer(NoApp(), sink_on(server), "app-1", check_seconds=2.0, chunk_size=10)
    healer.owned = {table: set(partitions) for table, partitions in owned.items()}
    return healer


async def test_workers_share_one_generation_and_each_requeues_its_partitions_when_redis_loses_it() -> None:
    server = fakeredis.FakeServer()
    a = healer_on(server, {"activity": {0}, "identity": {0}})
    b = healer_on(server, {"activity": {1}})
    assert [await a.check(), await b.check()] == ["claim", "adopt"]
    assert a.known == b.known and a.queue == b.queue == {}
    assert [await a.check(), await b.check()] == ["kept", "kept"]

    await a.sink.client.flushdb()
    assert await a.check() == "lost"
    assert list(a.queue.items()) == [(("identity", 0), "data_lost"), (("activity", 0), "data_lost")]
    assert await a.sink.client.get(generation_key("app-1")) == a.known
    assert await b.check() == "lost"  # the marker changed: b's keys went too
    assert b.queue == {("activity", 1): "data_lost"} and b.known == a.known
    assert await b.check() == "kept"


def test_after_a_recovery_only_the_partitions_just_taken_are_requeued_and_lost_ones_dropped() -> None:
    healer = healer_on(fakeredis.FakeServer(), {})
    table: Any = type("T", (), {"name": "profiles"})()
    healer.on_recovered(table, {0, 1})
    assert healer.queue == {("profiles", 0): "assigned", ("profiles", 1): "assigned"}
    healer.queue.clear()
    healer.queue[("profiles", 1)] = "data_lost"
    healer.on_recovered(table, {0, 2})  # a rebalance: 1 went to another worker, 2 came
    assert healer.queue == {("profiles", 2): "assigned"}
    healer.on_recovered(type("T", (), {"name": "dedupe"})(), {0})  # not a serving table
    assert set(healer.owned) == {"profiles"}


def test_a_rocksdb_partition_walk_reads_each_chunk_fresh_and_skips_faust_offsets(tmp_path: Path) -> None:
    db = Rdict(str(tmp_path / "p0"), options=Options(raw_mode=True))
    try:
        store = RocksDBStore.__new__(RocksDBStore)  # only its databases: no app, no table
        store._dbs = {0: db}
        store.offset_key = b"__faust\0offset__"
        db.put(store.offset_key, b"7")
        for i in range(5):
            db.put(orjson.dumps(f"k{i}"), orjson.dumps(i))
        chunks = store.raw_chunks(0, 2)
        first = next(chunks)
        db.put(orjson.dumps("k3"), orjson.dumps(33))  # written while the walk waits
        db.put(orjson.dumps("k0"), orjson.dumps(99))  # behind the walk: not read again
        rest = [item for chunk in chunks for item in chunk]
        read = {orjson.loads(k): orjson.loads(v) for k, v in [*first, *rest]}
        assert read == {"k0": 0, "k1": 1, "k2": 2, "k3": 33, "k4": 4}
        assert len(first) == 2
    finally:
        db.close()
        Rdict.destroy(str(tmp_path / "p0"))


def test_a_memory_partition_walk_yields_only_that_partitions_state_keys() -> None:
    data = {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}, watermark_key(0): 5, indexed_key(0): 1.0}
    store: Any = type("MemoryStore", (), {"data": data,
                                          "_key_partition": {k: (1 if k == "b" else 0) for k in data}})()
    table: Any = type("T", (), {"data": store})()
    chunks = ExactTable.state_chunks(table, 0, 2)
    first = next(chunks)
    data["c"] = {"n": 30}  # written while the walk waits: the next chunk has the new value
    assert [*first, *(item for chunk in chunks for item in chunk)] == [("a", {"n": 1}), ("c", {"n": 30})]
