"""Bulk changelog recovery: a worker that starts without local state reads its changelogs fast.

Faust recovers a table by routing every changelog record through its consumer thread,
the conductor, an ``asyncio.wait_for`` per record and a per-record bookkeeping step:
about 3,000-4,300 values/s here, while a bare aiokafka consumer reads the same changelog
from the same broker about 25x faster (``python -m bench.state_scale``). For a million
profiles that is minutes before a worker is ready.

:class:`BulkRecovery` is Faust's recovery service with one step added: after Faust has
worked out where each active changelog partition's reading starts (the store's persisted
offset, or the earliest offset) and where it ends (the highwater), every partition with
at least ``min_records`` left is read here, with a plain aiokafka consumer, straight into
the table's store (``memory://`` through the store's own ``apply_changelog_batch``, so its
key partitions are kept exactly as in Faust's path; ``compact://`` and ``rocksdb://`` as
below). The partition's start offset is then moved to the last record applied, and Faust's
own recovery reads only what is left (usually nothing), then completes as usual: the
table's ``on_recovery_completed`` hooks (``ExactTable``'s watermark rewind) see the same
state they would have seen. Re-applying a changelog record is harmless (the last write of
a key wins), so a bulk read cut short (a new rebalance, the deadline) loses nothing:
Faust goes on from the last record applied.

For ``compact://`` each value is packed straight from the changelog's JSON bytes (no decode
and re-encode). For ``rocksdb://`` the records are written as Faust writes them (raw key and value bytes,
one write batch per fetch, the persisted offset in the same batch) but without RocksDB's
write-ahead log, and every database written is flushed before Faust's recovery goes on
(about 3x less time per write here). A crash before that flush loses a suffix of the
bulk writes together with the offsets that claimed them (RocksDB keeps a prefix of the
writes made without the log), so the next start reads that suffix again.

Standby partitions, and partitions with fewer records left, are left to Faust.

**Where a changelog ends.** Faust takes each changelog partition's end from ListOffsets
(``latest``), and recovery stops reading once it has reached that offset. The embedded
broker (Tansu) answers ListOffsets with the base offset of the partition's last record
batch + 1, so every record of that batch after its first was left out of the recovered
table (or arrived after recovery had ended and sat in Faust's buffer, unapplied, until the
next rebalance). Its Fetch responses carry the right high watermark, so
:meth:`BulkRecovery._build_highwaters` fetches once from each partition's listed end and
takes the larger of the two (:func:`last_offsets`); on Apache Kafka they agree.

Examples
--------
>>> from faust.types import TP
>>> a, b = TP("t-changelog", 0), TP("t-changelog", 1)
>>> bulk_starts(highwaters={a: 99_999, b: 40}, offsets={a: -1, b: -1}, min_records=10_000)
{TP(topic='t-changelog', partition=0): 0}
>>> bulk_starts(highwaters={a: 99_999}, offsets={a: 99_999}, min_records=10_000)   # nothing left
{}
>>> bulk_starts(highwaters={a: 99_999}, offsets={a: -1}, min_records=0)            # 0: off
{}
>>> last_offsets(listed={a: 31, b: -1}, fetched={a: 38, b: None})   # a batch 31..37; b not answered
{TP(topic='t-changelog', partition=0): 37, TP(topic='t-changelog', partition=1): -1}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import rocksdict
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, AppT, CollectionT, ConsumerT

from tables.compact_store import CompactStore
from tables.metrics import RECOVERY_BULK_RECORDS

log = logging.getLogger(__name__)

#: Share of Faust's ``broker_request_timeout`` a bulk read may take: Faust wraps this step in
#: that timeout and treats running out of it as the service stopping.
DEADLINE_SHARE = 0.8
FETCH_MAX_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_MAX_BYTES = 16 * 1024 * 1024
IDLE_FETCHES = 3
#: Fewest records left in an active changelog partition for a bulk read (the app's
#: ``recovery_bulk_min_records``, from ``PERSONA_RECOVERY_BULK_MIN_RECORDS``); 0 turns it off.
DEFAULT_MIN_RECORDS = 10_000


def bulk_starts(highwaters: Mapping[TP, int], offsets: Mapping[TP, int | None], min_records: int) -> dict[TP, int]:
    """The partitions worth a bulk read, each with the first offset to read.

    ``highwaters``: each partition's last offset (Faust's ``active_highwaters``);
    ``offsets``: the last offset already in the store, ``-1`` or ``None`` for none
    (Faust's ``active_offsets``); ``min_records``: fewest records left for a bulk read,
    0 turns bulk reads off.
    """
    if min_records <= 0:
        return {}
    starts = {}
    for tp, highwater in highwaters.items():
        done = offsets.get(tp)
        first = 0 if done is None or done < 0 else done + 1
        if highwater is not None and highwater - first + 1 >= min_records:
            starts[tp] = first
    return starts


def last_offsets(listed: Mapping[TP, int], fetched: Mapping[TP, int | None]) -> dict[TP, int]:
    """Each changelog partition's last offset, from both answers the broker gives.

    ``listed``: the last offset per ListOffsets (Faust's highwater: end offset - 1, ``-1`` when
    empty); ``fetched``: the high watermark (end offset) a Fetch response gave, ``None`` when
    no fetch answered. The larger wins: a partition's end never moves back, and records past
    the listed end are records the table must hold.
    """
    out = {}
    for tp, highwater in listed.items():
        end = fetched.get(tp)
        out[tp] = highwater if end is None else max(highwater, end - 1)
    return out


def bootstrap_servers(app: AppT) -> list[str]:
    """The app's brokers as aiokafka takes them (``host:port``)."""
    return [f"{url.host}:{url.port or 9092}" for url in app.conf.broker]


async def fetched_highwaters(bootstrap: list[str], listed: Mapping[TP, int], timeout: float) -> dict[TP, int | None]:
    """The high watermark (end offset) a Fetch from each partition's listed last offset answers with.

    One fetch per partition (it returns at most the partition's last batch); ``None`` for a
    partition no fetch answered within ``timeout`` seconds.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        check_crcs=False,
    )
    await consumer.start()
    try:
        kafka_tps = {TopicPartition(tp.topic, tp.partition): tp for tp in listed}
        consumer.assign(list(kafka_tps))
        for kafka_tp, tp in kafka_tps.items():
            consumer.seek(kafka_tp, max(0, listed[tp]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(consumer.highwater(k) is None for k in kafka_tps):
            await consumer.getmany(timeout_ms=100)
        return {tp: consumer.highwater(kafka_tp) for kafka_tp, tp in kafka_tps.items()}
    finally:
        await consumer.stop()


class _ChangelogMessage:
    """The fields of a Faust ``Message`` that the table stores read while applying changelog records."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "tp", "value")

    def __init__(self, tp: TP, offset: int, timestamp: float, key: bytes | None, value: bytes | None) -> None:
        self.topic, self.partition, self.tp = tp.topic, tp.partition, tp
        self.offset, self.timestamp = offset, timestamp
        self.key, self.value = key, value
        self.headers: list[Any] = []


class _ChangelogEvent:
    """A changelog record as the stores see a Faust ``Event``: decoded lazily (``rocksdb://`` never decodes)."""

    __slots__ = ("_table", "message")

    def __init__(self, table: CollectionT, message: _ChangelogMessage) -> None:
        self.message, self._table = message, table

    @property
    def key(self) -> Any:
        table = self._table
        return table.changelog_topic.schema.loads_key(table.app, cast(Any, self.message))

    @property
    def value(self) -> Any:
        if self.message.value is None:
            return None
        table = self._table
        return table.changelog_topic.schema.loads_value(table.app, cast(Any, self.message))


async def read_into_tables(
    app: AppT,
    starts: Mapping[TP, int],
    highwaters: Mapping[TP, int],
    tables: Mapping[TP, CollectionT],
    deadline: float,
) -> tuple[dict[TP, int], int]:
    """Read each partition from its start to its highwater into its table.

    Returns the last offset applied per partition and the number of records applied.
    Stops early at ``deadline`` (``time.monotonic()``) or when the broker returns nothing
    several fetches in a row; what was applied stays applied either way.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(app),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_MAX_BYTES,
        fetch_max_wait_ms=100,
        max_poll_records=None,
        # As librdkafka's default (check.crcs=false): the broker verified every batch's CRC when it
        # was produced, and TCP checksums the transfer; checking again cost ~15 % of the read here.
        check_crcs=False,
    )
    await consumer.start()
    applied: dict[TP, int] = {}
    count = 0
    waited = applying = 0.0  # seconds in getmany (fetch waits and record parsing) and in the stores
    written_without_log: dict[Any, Any] = {}  # database -> its store
    try:
        pending = {TopicPartition(tp.topic, tp.partition): tp for tp in starts}
        consumer.assign(list(pending))
        for kafka_tp, tp in pending.items():
            consumer.seek(kafka_tp, starts[tp])
        idle = 0
        while pending and time.monotonic() < deadline and idle < IDLE_FETCHES:
            fetch_began = time.monotonic()
            batches = await consumer.getmany(*pending, timeout_ms=500)
            apply_began = time.monotonic()
            waited += apply_began - fetch_began
            idle = 0 if any(batches.values()) else idle + 1
            for kafka_tp, records in batches.items():
                if not records:
                    continue
                tp = pending[kafka_tp]
                # Tansu can report a partition's end as its last batch's start + 1, so the
                # records read may go past the highwater; Faust refuses a start offset past it.
                done = min(records[-1].offset, highwaters[tp])
                table_store = cast(Any, tables[tp]).data
                db = _apply(tables[tp], tp, records, done)
                if db is not None and db not in written_without_log:
                    written_without_log[db] = table_store
                    # Bulk-load memtables: a fetch's write batch (up to 16 MB) fills a 16 MB memtable,
                    # and with two of them each write waited for the previous flush.
                    db.set_options(write_buffer_options(BULK_WRITE_BUFFER_BYTES, BULK_WRITE_BUFFERS))
                applied[tp] = done
                count += len(records)
                RECOVERY_BULK_RECORDS.labels(tp.topic).inc(len(records))
            applying += time.monotonic() - apply_began
            for kafka_tp, tp in list(pending.items()):
                if await consumer.position(kafka_tp) > highwaters[tp]:
                    del pending[kafka_tp]
                    consumer.pause(kafka_tp)
    finally:
        await consumer.stop()
        flush_began = time.monotonic()
        for db, store in written_without_log.items():
            db.flush(True)
            db.set_options(write_buffer_options(store.rocksdb_options.write_buffer_size,
                                                store.rocksdb_options.max_write_buffer_number))
        log.info("bulk recovery: %.1f s in fetches, %.1f s applying, %.1f s flushing",
                 waited, applying, time.monotonic() - flush_began)
    return applied, count


def _apply(table: CollectionT, tp: TP, records: list[Any], done: int) -> Any:
    """Apply one fetch of a partition's records; the RocksDB database written without its log, if any.

    ``done``: the offset to persist as applied (at most the last record's; re-reading a record is harmless).
    """
    store = cast(Any, table).data
    if isinstance(store, RocksDBStore) and store.use_rocksdict:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for record in records:
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
        batch.put(store.offset_key, str(done).encode())
        db = store._db_for_partition(tp.partition)
        db.write(batch, WITHOUT_LOG)
        return db
    if isinstance(store, CompactStore) and _json_values(table):
        # Packed as they come, from the changelog's own JSON: no decode, no re-encode.
        for record in records:
            key = cast(Any, table)._to_key(_ChangelogEvent(table, _message(tp, record)).key)
            store.put_changelog_json(key, record.value, tp.partition)
        return None
    table.apply_changelog_batch(
        cast(
            Any,
            [_ChangelogEvent(table, _message(tp, r)) for r in records],
        )
    )
    return None


def _message(tp: TP, record: Any) -> _ChangelogMessage:
    return _ChangelogMessage(tp, record.offset, record.timestamp / 1000.0, record.key, record.value)


def _json_values(table: CollectionT) -> bool:
    """Whether the table's changelog values are plain JSON values (no model type to rebuild)."""
    schema = table.changelog_topic.schema
    return schema.value_type is None and schema.value_serializer == "json"


#: Memtables of a database while the bulk read writes it (its own settings are restored after).
BULK_WRITE_BUFFER_BYTES = 32 * 1024 * 1024
BULK_WRITE_BUFFERS = 4


def write_buffer_options(size: int, number: int) -> dict[str, str]:
    """RocksDB's dynamic memtable options (``Rdict.set_options``)."""
    return {"write_buffer_size": str(size), "max_write_buffer_number": str(number)}


#: Writes that skip RocksDB's write-ahead log (bulk loads that flush when done).
WITHOUT_LOG = rocksdict.WriteOptions()
WITHOUT_LOG.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says method


#: Share of Faust's ``broker_request_timeout`` the fetches that find where the changelogs end may take.
END_FETCH_SHARE = 0.25


class BulkRecovery(Recovery):
    """Faust's :class:`~faust.tables.recovery.Recovery` with the bulk read and the changelog ends
    described in the module docstring."""

    async def _build_highwaters(self, consumer: ConsumerT, tps: set[TP], destination: Any, title: str) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        if not tps:
            return
        listed = {tp: int(destination[tp]) for tp in tps}
        timeout = END_FETCH_SHARE * float(self.app.conf.broker_request_timeout)
        fetched = await fetched_highwaters(bootstrap_servers(self.app), listed, timeout)
        ends = last_offsets(listed, fetched)
        moved = {tp: (listed[tp], end) for tp, end in ends.items() if end != listed[tp]}
        if moved:
            log.info("%s changelog partitions end past the broker's listed end (listed -> fetched): %s",
                     title, ", ".join(f"{tp.topic}[{tp.partition}] {a} -> {b}" for tp, (a, b) in sorted(moved.items())))
        unanswered = sorted(tp for tp, end in fetched.items() if end is None)
        if unanswered:
            log.warning("no fetch answered for %s within %.1f s: their listed ends are kept", unanswered, timeout)
        for tp, end in ends.items():  # not update(): Faust's highwaters are a Counter, whose update() adds
            destination[tp] = end

    async def _build_offsets(self, consumer: ConsumerT, tps: set[TP], destination: Any, title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active" or destination is not self.active_offsets:
            return
        min_records = int(getattr(self.app, "recovery_bulk_min_records", DEFAULT_MIN_RECORDS))
        starts = bulk_starts({tp: self.active_highwaters[tp] for tp in tps}, destination, min_records)
        if not starts:
            return
        began = time.monotonic()
        timeout = float(self.app.conf.broker_request_timeout)
        applied, count = await read_into_tables(
            self.app, starts, self.active_highwaters, self.tp_to_table, began + DEADLINE_SHARE * timeout
        )
        for tp, offset in applied.items():
            destination[tp] = offset
        log.info(
            "bulk recovery: %d changelog records of %d partitions in %.1f s",
            count,
            len(starts),
            time.monotonic() - began,
        )


class PersonaTableManager(TableManager):
    """Faust's table manager with :class:`BulkRecovery` as its recovery service (``TableManager`` app setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
