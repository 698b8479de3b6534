"""The Redis serving layer's writer: coalesced, pipelined, and tolerant of Redis being down.

Agents call :meth:`RedisSink.put` on the hot path (a dict assignment); a timer calls
:meth:`RedisSink.flush`, which writes every changed key in one pipeline. When Redis is
unreachable the keys stay pending (newest value wins) up to ``max_pending``; beyond
that new keys are skipped and counted (:attr:`RedisSink.dropped`), and the worker's
self-heal (:mod:`app.runtime.redis_heal`) or ``persona rebuild-redis`` restores them from the
tables. Redis is a cache; the tables are the truth.

The self-heal hands its keys over with :meth:`RedisSink.offer`: the same flusher writes
them, one flush at a time, and a key an agent has put since wins over the offered one
(:func:`write_order`): an agent puts a key right after writing the table value it comes
from, so a pending put is never older than what a rebuild read from the table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.runtime.metrics import REDIS_ERRORS, REDIS_PENDING, REDIS_SKIPPED, REDIS_WRITES

log = logging.getLogger(__name__)

RedisHash = Mapping[str, str | int | float]


#: (set key, member) -> whether the member belongs: the newest SADD (True) or SREM (False) wins.
SetMembers = Mapping[tuple[str, str], bool]

K = TypeVar("K")
V = TypeVar("V")


def write_order(offered: Mapping[K, V], pending: Mapping[K, V]) -> dict[K, V]:
    """What one flush writes: the rebuild's offered values, except where an agent's put is pending.

    An agent puts a key after writing the table value it is derived from, and a rebuild reads
    the table when it offers, so a pending put is at least as new as an offered value of the
    same key: it wins, and it comes last in the pipeline.

    >>> write_order({"k1": "rebuilt", "k2": "rebuilt"}, {"k2": "agent", "k3": "agent"})
    {'k1': 'rebuilt', 'k2': 'agent', 'k3': 'agent'}
    """
    return {**{k: v for k, v in offered.items() if k not in pending}, **pending}


def earliest(*moments: float | None) -> float | None:
    """The earliest of the moments that are known.

    >>> earliest(None, 5.0, 3.0), earliest(None, None)
    (3.0, None)
    """
    known = [m for m in moments if m is not None]
    return min(known) if known else None


async def write_hashes(
    client: aioredis.Redis, batch: Mapping[str, RedisHash], ttl_seconds: int, members: SetMembers | None = None
) -> None:
    """Replace each hash of ``batch`` (delete, HSET, EXPIRE; an empty one is deleted), then SADD/SREM
    ``members``, in one pipeline.

    SADD and SREM are idempotent, so a replayed membership change writes the same sets; the
    members of one set go in one command each way (:func:`set_commands`).
    """
    pipe = client.pipeline(transaction=False)
    for key, fields in batch.items():
        pipe.delete(key)
        if not fields:  # Redis has no empty hash (and redis-py refuses an empty HSET): the key is gone
            continue
        pipe.hset(key, mapping=cast("Mapping[Any, Any]", fields))
        pipe.expire(key, ttl_seconds)
    for (key, present), names in set_commands(members or {}).items():
        if present:
            pipe.sadd(key, *names)
        else:
            pipe.srem(key, *names)
    await pipe.execute()


def set_commands(members: SetMembers) -> dict[tuple[str, bool], list[str]]:
    """One SADD (True) or SREM (False) per set with all its members: a rebuild's chunk adds hundreds.

    Each (set, member) pair has one outcome, so grouping changes no result.

    >>> set_commands({("s:vip", "p-1"): True, ("s:new", "p-1"): False, ("s:vip", "p-2"): True})
    {('s:vip', True): ['p-1', 'p-2'], ('s:new', False): ['p-1']}
    """
    out: dict[tuple[str, bool], list[str]] = {}
    for (key, member), present in members.items():
        out.setdefault((key, present), []).append(member)
    return out


class RedisSink:
    def __init__(self, url: str, ttl_seconds: int, max_pending: int) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.max_pending = max_pending
        self.healthy = True
        #: Set when a change was skipped (buffer full): Redis misses it until it is served again.
        self.dropped = False
        #: Called after a flush succeeds following failed ones (Redis is reachable again).
        self.on_reconnect: Callable[[], None] | None = None
        self._pending: dict[str, RedisHash] = {}
        self._members: dict[tuple[str, str], bool] = {}
        self._offered: dict[str, RedisHash] = {}
        self._offered_members: dict[tuple[str, str], bool] = {}
        self._in_flight = 0  # changes of a flush whose write has not succeeded yet
        self._oldest: float | None = None  # when the oldest change not yet taken by a flush came
        self._in_flight_since: float | None = None  # ... and the oldest change of the flush under way
        self._flushing = asyncio.Lock()  # one flush at a time: a later value is never overtaken
        self._client: aioredis.Redis | None = None

    def put(self, key: str, fields: RedisHash) -> None:
        """Schedule ``fields`` to replace the hash at ``key`` at the next flush."""
        if key not in self._pending and self.pending >= self.max_pending:
            self._skip()
            return
        self._pending[key] = fields
        self._changed()

    def set_member(self, key: str, member: str, present: bool) -> None:
        """Schedule ``member`` to be added to (``present``) or removed from the set at ``key``."""
        if (key, member) not in self._members and self.pending >= self.max_pending:
            self._skip()
            return
        self._members[(key, member)] = present
        self._changed()

    def offer(self, key: str, fields: RedisHash) -> None:
        """A rebuild's value for ``key``: written at the next flush unless an agent puts the key first.

        Not bounded by ``max_pending``: the rebuild offers a chunk, then flushes it.
        """
        self._offered[key] = fields
        self._changed()

    def offer_member(self, key: str, member: str, present: bool) -> None:
        """A rebuild's membership of ``member`` in the set at ``key`` (an agent's change wins)."""
        self._offered_members[(key, member)] = present
        self._changed()

    def _skip(self) -> None:
        REDIS_SKIPPED.inc()
        self.dropped = True

    def _changed(self) -> None:
        if self._oldest is None:
            self._oldest = time.monotonic()

    @property
    def pending(self) -> int:
        """Changes not yet written to Redis, counting those of a write in progress (it may fail)."""
        return (len(self._pending) + len(self._members) + len(self._offered) + len(self._offered_members)
                + self._in_flight)

    def lag_seconds(self) -> float:
        """How long the oldest change not yet in Redis has waited (0 when nothing waits): table-to-Redis lag."""
        since = earliest(self._oldest, self._in_flight_since)
        return 0.0 if since is None or not self.pending else max(0.0, time.monotonic() - since)

    async def flush(self) -> int:
        """Write every pending and offered key in one pipeline; return how many were written."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        REDIS_PENDING.set(self.pending)
        if not self.pending:
            return 0
        pending, self._pending = self._pending, {}
        members, self._members = self._members, {}
        offered, self._offered = self._offered, {}
        offered_members, self._offered_members = self._offered_members, {}
        self._in_flight_since, self._oldest = self._oldest, None
        batch = write_order(offered, pending)
        all_members = write_order(offered_members, members)
        written = len(batch) + len(all_members)
        self._in_flight = written
        try:
            await write_hashes(self.client, batch, self.ttl_seconds, all_members)
        except (RedisError, OSError) as exc:
            self._in_flight = 0
            # Keep what failed, unless a newer value arrived meanwhile.
            self._pending = {**pending, **self._pending}
            self._members = {**members, **self._members}
            self._offered = {**offered, **self._offered}
            self._offered_members = {**offered_members, **self._offered_members}
            self._oldest = earliest(self._in_flight_since, self._oldest)
            self._in_flight_since = None
            REDIS_ERRORS.inc()
            if self.healthy:
                log.warning("Redis write failed (%s); keeping %d keys pending", exc, self.pending)
            self.healthy = False
            return 0
        self._in_flight = 0
        self._in_flight_since = None
        if not self.healthy:
            log.warning("Redis is reachable again; wrote %d pending keys", written)
            self.healthy = True
            if self.on_reconnect is not None:
                self.on_reconnect()
        REDIS_WRITES.inc(written)
        REDIS_PENDING.set(self.pending)
        return written

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
