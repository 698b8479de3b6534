"""Redis heals itself: the worker re-serves its own table partitions when Redis may be behind them.

Redis is a cache of the tables (:mod:`app.serving.keys`). Two things leave it behind them,
and each makes the worker re-serve table partitions it owns, from its own tables (no
changelog read), with the same function as ``persona rebuild-redis``
(:func:`app.serving.keys.table_entries`):

* **Redis lost its data** (restart without persistence, a new instance, ``FLUSHDB``,
  eviction of the marker): every worker of an app id agrees on a *generation marker*,
  ``persona-meta:generation:<app id>``, a random value the first worker writes (``SET NX``).
  Each worker reads it every ``PERSONA_REDIS_CHECK_SECONDS`` and at once after Redis answers
  again following an outage. Missing, or another value than the one it knew (another worker
  found it missing first and wrote a new one): Redis lost data; the worker writes a new
  generation (unless one is there), counts ``persona_redis_data_lost_total`` and re-serves
  every partition it owns (reason ``data_lost``).
* **A worker took partitions** (start, restart after a kill, a rebalance): the previous
  owner may have died between writing a table value and flushing its Redis key, and the
  recovered table is then ahead of Redis for good. After each recovery the worker re-serves
  the partitions it has just taken (reason ``assigned``): one pass over the state of each,
  in the background. Chosen over re-serving only the keys of the last recovered range
  because the tables do not record which keys a crash left unflushed (with Redis down
  before the crash, that can be any key). The cost, measured by ``python -m bench.reserve_cost``
  (docs/operations.md): about 6,000 realistic profiles/s on one busy core, 100,000 profiles
  in about 17 s of background work, at most a few tens of ms per chunk.
* Changes **skipped** while Redis was down and the buffer full (``persona_redis_skipped_total``):
  once Redis answers, every owned partition is re-served (reason ``skipped``).

A re-serve walks a partition in chunks of ``PERSONA_REDIS_REBUILD_CHUNK`` values
(:meth:`tables.exact.ExactTable.state_chunks` reads each chunk when it is asked for, never
an older snapshot), offers the chunk's keys to the sink (:meth:`app.runtime.redis_sink.RedisSink.offer`)
and flushes, so the event loop is free between chunks and the agents go on. A key an agent
puts meanwhile wins over the offered one (:func:`app.runtime.redis_sink.write_order`). Segment sets
get SADDs for the memberships the tables hold (a membership that ended while Redis was
behind is left until ``persona rebuild-redis``, which rebuilds the sets whole).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, cast

from redis.exceptions import RedisError

from app.runtime.metrics import (
    REDIS_DATA_LOST,
    REDIS_REBUILD_KEYS,
    REDIS_REBUILD_QUEUED,
    REDIS_REBUILDS,
)
from app.runtime.redis_sink import RedisSink
from app.serving import keys as serving
from tables.exact import ExactTable

log = logging.getLogger(__name__)

GENERATION_PREFIX = "persona-meta:generation:"

Verdict = Literal["claim", "adopt", "kept", "lost"]
Reason = Literal["data_lost", "assigned", "skipped"]
#: One unit of re-serving: (table name, changelog partition).
Work = tuple[str, int]


def generation_key(app_id: str) -> str:
    """The generation marker of an app id (outside the ``persona:`` serving keys).

    >>> generation_key("persona-stream")
    'persona-meta:generation:persona-stream'
    """
    return f"{GENERATION_PREFIX}{app_id}"


def new_generation() -> str:
    """A generation value no other worker or earlier Redis can have had."""
    return f"{int(time.time())}-{uuid.uuid4().hex}"


def marker_verdict(known: str | None, found: str | None) -> Verdict:
    """What the generation marker read from Redis (``found``) says, given the one this worker knew.

    >>> marker_verdict(None, None)   # first check, no marker: write one (the start re-serve covers us)
    'claim'
    >>> marker_verdict(None, "g1")   # first check: the marker of the other workers
    'adopt'
    >>> marker_verdict("g1", "g1")
    'kept'
    >>> marker_verdict("g1", None)   # Redis restarted empty, FLUSHDB, eviction
    'lost'
    >>> marker_verdict("g1", "g2")   # another worker found it lost first and wrote a new one
    'lost'
    """
    if known is None:
        return "claim" if found is None else "adopt"
    return "kept" if found == known else "lost"


def check_due(now: float, next_check: float, reconnected: bool) -> bool:
    """Whether to read the marker now: its interval is up, or Redis just answered again after an outage.

    >>> check_due(10.0, 12.0, reconnected=False), check_due(10.0, 12.0, reconnected=True), check_due(12.0, 12.0, False)
    (False, True, True)
    """
    return reconnected or now >= next_check


def work_order(work: Iterable[Work]) -> list[Work]:
    """Partitions in the order a rebuild serves them: by table as in :data:`app.serving.keys.TABLES`, then partition.

    >>> work_order([("profiles", 1), ("identity_alias", 0), ("identity", 0), ("profiles", 0)])
    [('identity', 0), ('identity_alias', 0), ('profiles', 0), ('profiles', 1)]
    """
    return sorted(work, key=lambda w: (serving.TABLES.index(w[0]), w[1]))


def chunk_changes(
    table: str, chunk: Sequence[tuple[Any, Any]], now: float, aliases: Mapping[str, Any]
) -> tuple[list[serving.Entry], list[tuple[str, str]]]:
    """The serving keys and the (segment set, profile id) memberships of a chunk of one table's entries.

    >>> entries, members = chunk_changes("identity_alias", [("h1", {"profile_id": "p-1"})], 0.0, {})
    >>> entries, members
    ([('persona:identity:h1', {'profile_id': 'p-1'})], [])
    """
    entries = [entry for key, value in chunk for entry in serving.table_entries(table, key, value, now, aliases)]
    members = [(set_key, str(key)) for key, value in chunk
               for set_key in serving.segment_memberships(table, str(key), value)]
    return entries, members


class AppLike(Protocol):
    """What the healer needs of the Faust app: its tables and whether they are recovered."""

    @property
    def tables(self) -> Any: ...


class RedisHealer:
    """Finds out when Redis lost data and re-serves this worker's partitions (see the module docstring)."""

    def __init__(self, app: AppLike, sink: RedisSink, app_id: str, check_seconds: float, chunk_size: int) -> None:
        self.app = app
        self.sink = sink
        self.key = generation_key(app_id)
        self.check_seconds = check_seconds
        self.chunk_size = chunk_size
        #: The generation this worker last saw in Redis (None before its first check).
        self.known: str | None = None
        #: Partitions to re-serve, in order, with why.
        self.queue: dict[Work, Reason] = {}
        #: Active changelog partitions per table, as of the last recovery.
        self.owned: dict[str, set[int]] = {}
        self._next_check = 0.0
        self._reconnected = False
        sink.on_reconnect = self._on_reconnect

    def _on_reconnect(self) -> None:
        self._reconnected = True

    def on_recovered(self, table: ExactTable, partitions: set[int]) -> None:
        """A table finished recovery (start or rebalance) with these active partitions: serve the new ones."""
        if table.name not in serving.TABLES:
            return
        taken = partitions - self.owned.get(table.name, set())
        self.owned[table.name] = set(partitions)
        for work in [w for w in self.queue if w[0] == table.name and w[1] not in partitions]:
            del self.queue[work]  # moved to another worker, which serves it
        self.schedule([(table.name, p) for p in taken], "assigned")

    def schedule(self, work: Iterable[Work], reason: Reason) -> None:
        added = [w for w in work_order(work) if w not in self.queue]
        if not added:
            return
        for w in added:
            self.queue[w] = reason
        REDIS_REBUILDS.labels(reason).inc()
        REDIS_REBUILD_QUEUED.set(len(self.queue))
        log.info("Redis: re-serving %d table partitions (%s)", len(added), reason)

    def all_owned(self) -> list[Work]:
        return [(table, p) for table, partitions in self.owned.items() for p in partitions]

    async def tick(self) -> None:
        """The timer's step: read the marker when due, then re-serve what is queued (if Redis and tables allow)."""
        now = time.monotonic()
        if self.check_seconds > 0 and check_due(now, self._next_check, self._reconnected):
            self._reconnected = False
            self._next_check = now + self.check_seconds
            await self.check()
        if self.sink.dropped and self.sink.healthy:
            self.sink.dropped = False
            self.schedule(self.all_owned(), "skipped")
        if self.queue and self.ready():
            await self.drain()

    async def check(self) -> Verdict | None:
        """Read the generation marker; on a loss, write a new one and queue every owned partition."""
        client = self.sink.client
        try:
            found = cast(str | None, await client.get(self.key))  # the sink's client decodes responses
            verdict = marker_verdict(self.known, found)
            if verdict in ("claim", "lost"):
                fresh = new_generation()
                if not await client.set(self.key, fresh, nx=True):  # another worker was first
                    fresh = cast(str | None, await client.get(self.key)) or fresh
                found = fresh
        except (RedisError, OSError):
            return None  # Redis is down: the sink counts it; checked again when it answers
        if verdict in ("claim", "adopt"):
            log.info("Redis generation marker %s: %s", "written" if verdict == "claim" else "read", found)
        self.known = found
        if verdict == "lost":
            REDIS_DATA_LOST.inc()
            log.warning("Redis lost its data (generation marker %s); re-serving this worker's partitions",
                        "changed" if found else "missing")
            self.schedule(self.all_owned(), "data_lost")
        return verdict

    def ready(self) -> bool:
        """Tables recovered and no rebalance under way (a half-recovered table is not served)."""
        app = cast(Any, self.app)
        recovery = app.tables.recovery
        return bool(recovery.completed.is_set()) and not recovery.in_recovery and not app.rebalancing

    async def drain(self) -> None:
        """Re-serve the queued partitions one after the other; stop early if Redis fails or a rebalance starts."""
        while self.queue and self.sink.healthy and self.ready():
            work = next(iter(self.queue))
            if not await self.serve(*work):
                break
            self.queue.pop(work, None)
            REDIS_REBUILD_QUEUED.set(len(self.queue))
        REDIS_REBUILD_QUEUED.set(len(self.queue))

    async def serve(self, table_name: str, partition: int) -> bool:
        """Re-serve one partition of one table, a chunk per flush. False: stopped (Redis failed, rebalance)."""
        table = cast(ExactTable, self.app.tables[table_name])
        aliases = self.app.tables["identity_alias"]
        for chunk in table.state_chunks(partition, self.chunk_size):
            if partition not in self.owned.get(table_name, set()):
                return True  # moved to another worker meanwhile: its recovery serves it
            if not self.ready():
                return False
            # Read (state_chunks), derived and offered with no await in between: a value an agent
            # writes after this point is put after the offer, and wins.
            entries, members = chunk_changes(table_name, chunk, time.time(), aliases)
            for key, fields in entries:
                self.sink.offer(key, fields)
            for set_key, member in members:
                self.sink.offer_member(set_key, member, True)
            if entries or members:
                await self.sink.flush()
                if not self.sink.healthy:
                    return False
                REDIS_REBUILD_KEYS.inc(len(entries) + len(members))
            else:
                await asyncio.sleep(0)
        return True
