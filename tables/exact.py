"""Exact recovery for changelog-backed tables: no lost and no double-applied input.

Faust commits input offsets on its own schedule, separately from the table's
changelog. Two failure orders follow, and each is handled here, in one place:

* the changelog is **ahead** of the committed offset (crash after the state was
  written, before the commit): the input is replayed; every state value carries the
  source offset it reflects and the pure ``apply`` functions skip offsets they have
  already seen;
* the committed offset is **ahead** of the changelog (the commit landed, the state
  write did not — seen on the embedded broker across a SIGTERM): the table writes a
  per-partition *watermark* — the newest source offset whose effects are all in the
  changelog — into the same changelog partition, *after* the state records it covers.
  On recovery, before Faust seeks to the committed offsets, any committed offset past
  ``watermark + 1`` is committed back to ``watermark + 1``, so the lost events are
  read again.

The watermark is written every ``watermark_every`` events rather than per event: a
stale watermark only means a longer (idempotent) replay, never a lost event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

import faust
import orjson
from aiokafka.structs import TopicPartition
from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.types import TP
from faust.types.tuples import FutureMessage

from tables.due_index import RAW_INDEX_KEY_PREFIX, is_index_key
from tables.metrics import INPUT_GAPS, RECOVERY_REWINDS
from tables.watermark import WATERMARK_PREFIX, is_watermark_key, watermark_key

log = logging.getLogger(__name__)

#: How a watermark key starts in a store that keeps raw (JSON-serialized) keys.
_RAW_WATERMARK_PREFIX = b'"' + WATERMARK_PREFIX.encode()
#: How the keys that are not state start in a raw-key store: watermarks, tick-index keys.
_RAW_META_PREFIXES = (_RAW_WATERMARK_PREFIX, RAW_INDEX_KEY_PREFIX)
#: Above this many keys (RocksDB's estimate) a RocksDB table's size is the estimate, not a count.
EXACT_COUNT_LIMIT = 1_000_000
ESTIMATED_KEYS = "rocksdb.estimate-num-keys"
#: Keys counted between two yields to the event loop (about 40 ms of RocksDB iteration here).
COUNT_SLICE = 10_000


#: Seeks back to the same offset, met by the same next offset, after which a gap is taken for a
#: hole in the log (a transaction marker) rather than records the consumer failed to hand over.
GAP_SEEKS_BEFORE_A_HOLE = 5
#: How long after a recovery the gap guard watches (:meth:`ExactTable.contiguous`): the records
#: handed over out of order come in the first seconds; later a transactional publisher's markers
#: pass without seeks back.
GAP_GUARD_SECONDS = 60.0


class Admission(NamedTuple):
    """What of a batch a table may apply now: see :func:`admit`."""

    #: Indices (into the batch) of the records to apply, in order.
    keep: list[int]
    #: Source partition -> the offset to seek back to (its records from the first gap on are left out).
    seek_back: dict[int, int]
    #: Source partition -> the next offset expected once the kept records are applied.
    expected: dict[int, int]


def admit(positions: Sequence[tuple[int, int]], expected: Mapping[int, int]) -> Admission:
    """The records a table may apply: per source partition, those up to the first gap in its offsets.

    ``positions`` are the batch's (partition, offset) in order; ``expected`` the next offset each
    partition's state expects (its rewind target after a recovery, then one past the last record
    applied; a partition not named expects anything). A record past that offset means records in
    between were never handed over (Faust hands the agents records from before its seek after a
    recovery, then drops some: docs/reliability.md): applying it would move the states past them,
    and they would count as replays when read again. Records at or below it are replays, kept
    (the states skip them).

    >>> admit([(0, 5), (0, 6), (1, 9), (0, 9), (0, 10), (1, 10)], {0: 5, 1: 9})
    Admission(keep=[0, 1, 2, 5], seek_back={0: 7}, expected={0: 7, 1: 11})
    >>> admit([(0, 3), (0, 4)], {0: 5}).keep, admit([(2, 40)], {}).expected
    ([0, 1], {2: 41})
    """
    keep: list[int] = []
    seek_back: dict[int, int] = {}
    after = dict(expected)
    for index, (partition, offset) in enumerate(positions):
        if partition in seek_back:
            continue
        want = after.get(partition)
        if want is not None and offset > want:
            seek_back[partition] = want
            continue
        keep.append(index)
        after[partition] = max(want or 0, offset + 1)
    return Admission(keep, seek_back, after)


def rewind_target(watermark: int | None, committed: int | None) -> int | None:
    """The offset to commit back to, or ``None`` when the committed offset is safe.

    >>> rewind_target(watermark=41, committed=42)     # committed = next to read: consistent
    >>> rewind_target(watermark=41, committed=50)     # 42..49 committed but not in state
    42
    >>> rewind_target(watermark=None, committed=50)   # no state at all for this partition
    0
    >>> rewind_target(watermark=None, committed=None)
    """
    if committed is None or committed <= 0:
        return None
    next_unapplied = 0 if watermark is None else watermark + 1
    return next_unapplied if committed > next_unapplied else None


class ExactTable(faust.Table):
    """A Faust table whose recovery rewinds its source topic to what the state reflects.

    Parameters
    ----------
    source_topic
        The input topic whose partition ``p`` feeds changelog partition ``p``.
    watermark_every
        How many applied source records between two watermark writes.
    """

    def __init__(self, app: faust.App, *, source_topic: str, watermark_every: int = 100, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.source_topic = source_topic
        self.watermark_every = watermark_every
        self._since_watermark: dict[int, int] = {}
        self._pending_outputs: list[Awaitable[Any]] = []
        #: Called with the partition just before each watermark write, to write state that is
        #: too large to write per record (the cluster model checkpoint): the watermark then
        #: never claims more than that state reflects.
        self.before_watermark: Callable[[int], None] | None = None
        #: Called with the table and its active changelog partitions after each recovery (every
        #: rebalance): the Redis self-heal re-serves the partitions this worker has just taken.
        self.on_recovered: Callable[[ExactTable, set[int]], None] | None = None
        self._partition: int | None = None
        #: Source partition -> the next offset the state expects (:func:`admit`), set at each recovery.
        self.expected: dict[int, int] = {}
        #: Source partition -> (offset sought back to, the offset met there, how many times in a row).
        self._gap_seeks: dict[int, tuple[int, int, int]] = {}
        self._admitted: dict[int, int] = {}
        self._guard_until = 0.0

    def put(self, key: Any, value: Any, partition: int) -> None:
        """``table[key] = value`` with the changelog record in ``partition``.

        Faust takes the changelog partition from the event being iterated, and there is
        none while an agent works on a ``stream.take_events`` batch (Faust refuses the
        write: faust-streaming issue #497). A batch passes each key's source partition.
        """
        with self.writing_to(partition):
            self[key] = value

    def discard(self, key: Any, partition: int) -> None:
        """Delete ``key`` if it is there (a tombstone in changelog ``partition``); a missing key writes nothing."""
        with self.writing_to(partition):
            self.pop(key, None)

    @contextlib.contextmanager
    def writing_to(self, partition: int) -> Iterator[None]:
        """Within the block, every write and delete of the table goes to changelog ``partition``.

        For code that writes through the store protocol (``table[key] = value``,
        ``del table[key]``) inside a ``stream.take_events`` batch, as :meth:`put` does.
        """
        self._partition = partition
        try:
            yield
        finally:
            self._partition = None

    @property
    def writing_partition(self) -> int | None:
        """The changelog partition named by the enclosing :meth:`writing_to` block, if any."""
        return self._partition

    def partition_for_key(self, key: Any) -> int | None:
        if self._partition is not None:
            return self._partition
        return cast(int | None, super().partition_for_key(key))

    def send_changelog(self, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> FutureMessage:
        """Faust's changelog write, and a memory store learns the key's partition.

        Faust's memory store knows the partition of the keys it recovered, not of those
        written since; it needs it to drop the keys of partitions that moved to another worker,
        and :meth:`state_chunks` to walk one partition.
        """
        future = super().send_changelog(partition, key, value, *args, **kwargs)
        key_partition = getattr(self.data, "_key_partition", None)
        if key_partition is not None and not isinstance(self.data, FaustRocksDBStore):
            if value is None:
                key_partition.pop(key, None)
            else:
                key_partition[key] = future.message.partition
        return future

    def state_chunks(self, partition: int, size: int) -> Iterator[list[tuple[Any, Any]]]:
        """This worker's state (key, value) pairs of changelog ``partition``, about ``size`` keys at a time.

        A chunk is read when it is asked for, with the values the table holds then (never
        those of an earlier moment), so a caller that yields to the event loop between chunks
        hands on no value older than the table's. Watermarks and tick-index keys are left out.
        """
        store = self.data
        if isinstance(store, FaustRocksDBStore):
            raw_chunks = getattr(store, "raw_chunks", None)
            if raw_chunks is None:
                raise TypeError("walking a RocksDB partition needs tables.rocksdb_store (rocksdb://)")
            for raw in raw_chunks(partition, size):
                yield [(orjson.loads(k), orjson.loads(v)) for k, v in raw if not k.startswith(_RAW_META_PREFIXES)]
            return
        data = cast(Any, store).data
        key_partition = cast(Any, store)._key_partition
        keys = list(key_partition)  # a copy: the mapping changes while the caller waits
        for start in range(0, len(keys), size):
            chunk = []
            for key in keys[start : start + size]:
                if key_partition.get(key) != partition or is_watermark_key(key) or is_index_key(key):
                    continue
                value = data.get(key)
                if value is not None:
                    chunk.append((key, value))
            yield chunk

    def hold_watermark_for(self, delivery: Awaitable[Any]) -> None:
        """Do not move the watermark past the current record until ``delivery`` is acknowledged.

        Used for side outputs (dead letters) that must not be lost either.
        """
        self._pending_outputs.append(delivery)

    async def applied(self, partition: int, offset: int, records: int = 1) -> None:
        """Record that the effects of source ``offset`` are written; maybe write the watermark.

        ``records``: how many source records this call covers (a batch ending at ``offset``
        whose effects are all written calls it once).
        """
        count = self._since_watermark.get(partition, 0) + records
        if count < self.watermark_every:
            self._since_watermark[partition] = count
            return
        self._since_watermark[partition] = 0
        if self._pending_outputs:
            pending, self._pending_outputs = self._pending_outputs, []
            await asyncio.gather(*pending)
        if self.before_watermark is not None:
            self.before_watermark(partition)
        self.put(watermark_key(partition), offset, partition)

    async def count_state_keys(self) -> int:
        """Keys of the table's state on this worker (watermarks and tick-index keys not counted).

        Counted key by key (Faust's own ``len`` of a RocksDB store does the same), in slices
        with the event loop free between them: a million keys take seconds to count. A RocksDB
        table that RocksDB estimates at more than :data:`EXACT_COUNT_LIMIT` keys reports that
        estimate instead (watermarks and index keys included): at ten million profiles a count
        took 48 s and kept the loop about 300 ms behind all along.
        """
        store = self.data
        if isinstance(store, FaustRocksDBStore):
            estimate = sum(int(db.property_int_value(ESTIMATED_KEYS) or 0) for db in store._dbs_for_actives())
            if estimate > EXACT_COUNT_LIMIT:
                return estimate
            keys: Iterator[Any] = store._iterkeys()
            raw = True
        else:
            keys = iter(list(cast(Any, store).data))  # a copy: the mapping changes while the loop is free
            raw = False
        count = 0
        for seen, key in enumerate(keys, 1):
            if not (key.startswith(_RAW_META_PREFIXES) if raw else is_watermark_key(key) or is_index_key(key)):
                count += 1
            if seen % COUNT_SLICE == 0:
                await asyncio.sleep(0)
        return count

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        rewinds: dict[TP, int] = {}
        self.expected, self._gap_seeks = {}, {}
        self._guard_until = time.monotonic() + GAP_GUARD_SECONDS
        for changelog_tp in active_tps:
            source_tp = TP(self.source_topic, changelog_tp.partition)
            watermark = self.data.get(watermark_key(changelog_tp.partition))
            committed = await self._committed(source_tp)
            target = rewind_target(watermark, committed)
            start = target if target is not None else committed
            if start is not None:  # where Faust's seek puts the partition; never committed: anywhere
                self.expected[changelog_tp.partition] = start
            if target is not None:
                log.warning(
                    "%s: committed offset %s of %s is ahead of the table (watermark %s); rewinding to %s",
                    self.name,
                    committed,
                    source_tp,
                    watermark,
                    target,
                )
                rewinds[source_tp] = target
                RECOVERY_REWINDS.labels(self.source_topic).inc()
        if rewinds:
            # Faust seeks every partition to its committed offset right after this hook (a rewind
            # to offset 0 too: app/runtime/kafka_transport.py). Seeking here instead lets a fetch hand the
            # rewound records over before the stream partitions resume, and Faust drops them.
            await cast(Any, self.app.consumer)._commit(rewinds)
        if self.on_recovered is not None:
            self.on_recovered(self, {tp.partition for tp in active_tps})

    async def admit(self, positions: Sequence[tuple[int, int]]) -> list[int]:
        """The indices of a batch's records to apply now (:func:`admit`); seeks back where a gap is.

        The caller applies the kept records, then calls :meth:`applied_through`. A gap met again
        and again at the same place (:data:`GAP_SEEKS_BEFORE_A_HOLE` seeks back) is a hole in the
        log, and the partition's expectation moves past it.
        """
        admission = admit(positions, self.expected)
        holes = {}
        for partition, offset in admission.seek_back.items():
            met = next(o for p, o in positions if p == partition and o > offset)
            last = self._gap_seeks.get(partition)
            times = last[2] + 1 if last is not None and last[:2] == (offset, met) else 1
            self._gap_seeks[partition] = (offset, met, times)
            if times > GAP_SEEKS_BEFORE_A_HOLE:
                holes[partition] = met
            elif last is None or last[0] != offset:  # once per gap, not per batch of a burst
                log.warning("%s: %s[%s] handed over offset %s where %s was expected; seeking back",
                            self.name, self.source_topic, partition, met, offset)
        if holes:
            for partition, met in holes.items():
                log.warning("%s: offsets %s-%s of %s[%s] never came after %s seeks back: taken for a hole",
                            self.name, self.expected[partition], met - 1, self.source_topic, partition,
                            GAP_SEEKS_BEFORE_A_HOLE)
                self.expected[partition] = met
                self._gap_seeks.pop(partition)
            admission = admit(positions, self.expected)
        consumer = cast(Any, self.app.consumer)
        for partition, offset in admission.seek_back.items():
            INPUT_GAPS.labels(self.source_topic).inc()
            await consumer.seek(TP(self.source_topic, partition), offset)
        for partition in {positions[i][0] for i in admission.keep} - admission.seek_back.keys():
            self._gap_seeks.pop(partition, None)  # it moved on: the next gap counts from one
        self._admitted = admission.expected
        return admission.keep

    async def contiguous(self, records: Sequence[Any]) -> list[Any]:
        """The records of a batch (Faust events) this table may apply now: :meth:`admit` on their positions,
        in the :data:`GAP_GUARD_SECONDS` after a recovery; all of them after that."""
        if time.monotonic() > self._guard_until:
            self.expected = {}
            return list(records)
        kept = await self.admit([(r.message.partition, r.message.offset) for r in records])
        return list(records) if len(kept) == len(records) else [records[i] for i in kept]

    def applied_through(self) -> None:
        """The records :meth:`admit` kept are applied: expect what follows them."""
        self.expected.update(self._admitted)
        self._admitted = {}

    async def _committed(self, tp: TP) -> int | None:
        thread = self.app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._ensure_consumer()
        offset = await thread.call_thread(consumer.committed, TopicPartition(tp.topic, tp.partition))
        return int(offset) if offset is not None else None
