"""The Redis serving layer's writer: coalesced, pipelined, and tolerant of Redis being down.

Agents call :meth:`RedisSink.put` on the hot path (a dict assignment); a timer calls
:meth:`RedisSink.flush`, which writes every changed key in one pipeline. When Redis is
unreachable the keys stay pending (newest value wins) up to ``max_pending``; beyond
that new keys are skipped and counted, and ``persona rebuild-redis`` (from the tables)
restores them. Redis is a cache; the tables are the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.metrics import REDIS_ERRORS, REDIS_PENDING, REDIS_SKIPPED, REDIS_WRITES

log = logging.getLogger(__name__)

RedisHash = Mapping[str, str | int | float]


def flatten(summary: Mapping[str, Any]) -> dict[str, str | int | float]:
    """Redis hash fields of a summary: scalars as they are, the rest as JSON, ``None`` left out.

    >>> flatten({"events": 3, "counts": {"page_view": 3}, "first_seen": None})
    {'events': 3, 'counts': '{"page_view":3}'}
    """
    return {
        name: value if isinstance(value, int | float | str) else orjson.dumps(value).decode()
        for name, value in summary.items()
        if value is not None
    }


#: (set key, member) -> whether the member belongs: the newest SADD (True) or SREM (False) wins.
SetMembers = Mapping[tuple[str, str], bool]


async def write_hashes(
    client: aioredis.Redis, batch: Mapping[str, RedisHash], ttl_seconds: int, members: SetMembers | None = None
) -> None:
    """Replace each hash of ``batch`` (delete, HSET, EXPIRE), then SADD/SREM ``members``, in one pipeline.

    SADD and SREM are idempotent, so a replayed membership change writes the same sets.
    """
    pipe = client.pipeline(transaction=False)
    for key, fields in batch.items():
        pipe.delete(key)
        pipe.hset(key, mapping=cast("Mapping[Any, Any]", fields))
        pipe.expire(key, ttl_seconds)
    for (key, member), present in (members or {}).items():
        if present:
            pipe.sadd(key, member)
        else:
            pipe.srem(key, member)
    await pipe.execute()


class RedisSink:
    def __init__(self, url: str, ttl_seconds: int, max_pending: int) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.max_pending = max_pending
        self.healthy = True
        self._pending: dict[str, RedisHash] = {}
        self._members: dict[tuple[str, str], bool] = {}
        self._in_flight = 0  # changes of a flush whose write has not succeeded yet
        self._client: aioredis.Redis | None = None

    def put(self, key: str, fields: RedisHash) -> None:
        """Schedule ``fields`` to replace the hash at ``key`` at the next flush."""
        if key not in self._pending and self.pending >= self.max_pending:
            REDIS_SKIPPED.inc()
            return
        self._pending[key] = fields

    def set_member(self, key: str, member: str, present: bool) -> None:
        """Schedule ``member`` to be added to (``present``) or removed from the set at ``key``."""
        if (key, member) not in self._members and self.pending >= self.max_pending:
            REDIS_SKIPPED.inc()
            return
        self._members[(key, member)] = present

    @property
    def pending(self) -> int:
        """Changes not yet written to Redis, counting those of a write in progress (it may fail)."""
        return len(self._pending) + len(self._members) + self._in_flight

    async def flush(self) -> int:
        """Write every pending key in one pipeline; return how many were written."""
        REDIS_PENDING.set(self.pending)
        if not self.pending:
            return 0
        batch, self._pending = self._pending, {}
        members, self._members = self._members, {}
        self._in_flight = len(batch) + len(members)
        try:
            await write_hashes(self.client, batch, self.ttl_seconds, members)
        except (RedisError, OSError) as exc:
            self._in_flight = 0
            # Keep what failed, unless a newer value arrived meanwhile.
            self._pending = {**batch, **self._pending}
            self._members = {**members, **self._members}
            REDIS_ERRORS.inc()
            if self.healthy:
                log.warning("Redis write failed (%s); keeping %d keys pending", exc, len(self._pending))
            self.healthy = False
            return 0
        self._in_flight = 0
        if not self.healthy:
            log.warning("Redis is reachable again; wrote %d pending keys", len(batch) + len(members))
        self.healthy = True
        REDIS_WRITES.inc(len(batch) + len(members))
        REDIS_PENDING.set(self.pending)
        return len(batch) + len(members)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.from_url(
                self.url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
            )
        return self._client

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
