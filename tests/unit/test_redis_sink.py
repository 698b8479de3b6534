"""The Redis writer coalesces changes and survives Redis being down (fakeredis: pure logic only)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.runtime import redis_sink
from app.runtime.redis_sink import RedisSink


@pytest.fixture
def sink() -> RedisSink:
    s = RedisSink("redis://unused", ttl_seconds=60, max_pending=3)
    s._client = fakeredis.FakeAsyncRedis(decode_responses=True)
    return s


async def test_flush_writes_each_changed_key_once_with_a_ttl(sink: RedisSink) -> None:
    sink.put("k1", {"events": 1})
    sink.put("k1", {"events": 2})
    sink.put("k2", {"events": 5, "counts": "{}"})
    assert await sink.flush() == 2
    assert await sink.client.hgetall("k1") == {"events": "2"}
    assert 0 < await sink.client.ttl("k2") <= 60
    assert await sink.flush() == 0


async def test_an_empty_hash_deletes_its_key_and_does_not_hold_back_the_other_keys(sink: RedisSink) -> None:
    # redis-py refuses an HSET without fields; once that failed the whole pipeline, kept every
    # key pending and marked Redis down until the key got fields again (seen in a fault run).
    await sink.client.hset("k1", mapping={"events": 1})
    sink.put("k1", {})
    sink.put("k2", {"events": 2})
    assert await sink.flush() == 2
    assert sink.healthy and sink.pending == 0
    assert await sink.client.exists("k1") == 0
    assert await sink.client.hgetall("k2") == {"events": "2"}


async def test_failed_flush_keeps_keys_pending_and_newer_values_win(
    sink: RedisSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.put("k1", {"events": 1})
    real_pipeline = sink.client.pipeline

    def broken(*args: object, **kwargs: object) -> object:
        raise RedisConnectionError("down")

    monkeypatch.setattr(sink.client, "pipeline", broken)
    assert await sink.flush() == 0
    assert sink.pending == 1 and not sink.healthy
    sink.put("k1", {"events": 7})
    monkeypatch.setattr(sink.client, "pipeline", real_pipeline)
    assert await sink.flush() == 1
    assert await sink.client.hgetall("k1") == {"events": "7"}
    assert sink.healthy


async def test_keys_being_written_still_count_as_pending_until_the_write_succeeds(
    sink: RedisSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.put("k1", {"events": 1})
    sink.set_member("segment:s", "p-a", True)
    seen_during_write: list[int] = []
    real_write = redis_sink.write_hashes

    async def observed_write(*args: Any, **kwargs: Any) -> None:
        seen_during_write.append(sink.pending)  # what /health reports while Redis hangs
        await real_write(*args, **kwargs)

    monkeypatch.setattr(redis_sink, "write_hashes", observed_write)
    assert await sink.flush() == 2
    assert seen_during_write == [2] and sink.pending == 0


def test_beyond_max_pending_new_keys_are_skipped_but_known_keys_update(sink: RedisSink) -> None:
    for i in range(5):
        sink.put(f"k{i}", {"n": i})
    assert sink.pending == 3
    sink.put("k0", {"n": 99})
    assert sink._pending["k0"] == {"n": 99}


async def test_segment_set_members_are_added_and_removed_and_the_newest_change_wins(
    sink: RedisSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.set_member("persona:segment:vip", "p-1", True)
    sink.set_member("persona:segment:vip", "p-2", True)
    assert await sink.flush() == 2
    assert await sink.client.smembers("persona:segment:vip") == {"p-1", "p-2"}
    real_pipeline = sink.client.pipeline

    def broken(*args: object, **kwargs: object) -> object:
        raise RedisConnectionError("down")

    monkeypatch.setattr(sink.client, "pipeline", broken)
    sink.set_member("persona:segment:vip", "p-1", False)
    assert await sink.flush() == 0 and sink.pending == 1
    sink.set_member("persona:segment:vip", "p-2", False)
    sink.set_member("persona:segment:vip", "p-2", True)  # exited then re-entered before the flush
    monkeypatch.setattr(sink.client, "pipeline", real_pipeline)
    assert await sink.flush() == 2
    assert await sink.client.smembers("persona:segment:vip") == {"p-2"}
    # Replaying the same changes writes the same set (SADD/SREM are idempotent).
    sink.set_member("persona:segment:vip", "p-1", False)
    await sink.flush()
    assert await sink.client.scard("persona:segment:vip") == 1
