"""The profiles stage's fold of one batch of ``<app_id>-profile-events`` records, as a pure step.

The agent (agents/profiles.py) takes records in batches and hands them here with a
read-only view of the profiles table; :func:`fold` returns everything the batch does,
and the agent carries it out in this order:

1. send :attr:`Batch.handovers` (``merge_in``, redirected records, split parts) to
   profile-events and wait for **every** acknowledgement;
2. write :attr:`Batch.pending`, each changed profile **once**, into its partition;
3. send :attr:`Batch.outputs` and the dead letters of :attr:`Batch.rejected` (each
   delivery holds the watermark);
4. move the watermark once per partition (:attr:`Batch.last_offsets`);
5. serve :attr:`Batch.served` to Redis, once per changed profile.

States chain through ``pending`` exactly as they would through the table (a record
reads ``pending`` first, then the table), so a batch gives the state and outputs of
the same records applied one by one. Exactness under replay is the per-record one
(app/profiles/merges.py): a state that records a handover is written only after
the handover is acknowledged (1 before 2), and every step skips the offsets or change
ids its state already reflects, so a batch replayed after a crash applies nothing twice.

Ticks are records of the same topic and are applied in their place: a tick closes the
sessions and runs the rule evaluations of the profiles of its partition that are due
(:attr:`StageMemory.timers`).

Examples
--------
>>> from app.sessions.state import ev
>>> doc = lambda eid, ts: orjson.dumps({"profile_id": "p-a", "ts": ts, "event": ev(eid, ts).data})
>>> memory = StageMemory()
>>> batch = fold([Record("pe", 0, 7, doc("e1", 1000.0)), Record("pe", 0, 8, doc("e2", 1010.0)),
...               Record("pe", 0, 9, orjson.dumps({"tick": 14_000.0}))], {}, memory, wall=10_000.0)
>>> list(batch.pending), batch.pending["p-a"][0]["profile"]["events"], batch.last_offsets
(['p-a'], 2, {0: (9, 3)})
>>> [kind for kind, _, _ in batch.outputs]  # a segment entered; the tick (stream time 1010 + 4000 s) closed the session
['segment_changes', 'session_summaries', 'cluster_input']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import orjson

from app.events.positions import position
from app.events.validation import Event, Rejection, processing_error
from app.profiles import cluster_input
from app.profiles import merges as profile_identity
from app.profiles import state as profile_stage
from app.profiles.quality import QualityMonitor
from app.profiles.timer_queue import TimerQueue
from app.sessions import state as sessions
from tables.due_index import DUE_PREFIX, DueKeySource, due_key, indexed_key, is_index_key, parse_due_key
from tables.hooks import State
from tables.watermark import is_watermark_key

OutputKind = Literal["session_summaries", "cluster_input", "segment_changes"]


class Record(NamedTuple):
    """One profile-events record: where it was read, and its value."""

    topic: str
    partition: int
    offset: int
    value: bytes


class At(NamedTuple):
    """Where one record (or one item of a pack) stands in its partition (app/profiles/pack.py)."""

    partition: int
    #: Its source position: what states compare to skip what they already reflect.
    position: int
    #: ``topic:partition:offset[:item]``: names the input in the ids of the changes it causes.
    basis: str


@dataclass
class StageMemory:
    """What the stage keeps between batches, outside the table (rebuilt after a restart)."""

    clock: profile_stage.StreamClock = field(default_factory=profile_stage.StreamClock)
    monitor: QualityMonitor = field(default_factory=QualityMonitor)
    #: partition -> the profiles a tick may change, by due time (an open session's close or
    #: a rule evaluation; :func:`app.profiles.state.next_tick_at`): a copy of the table's due
    #: keys (tables/due_index.py) for stores whose keys are not sorted. ``None`` until the first
    #: record or tick after a start or a rebalance: then ONE pass over the table's keys (no value
    #: is decoded) indexes every partition.
    timers: dict[int, TimerQueue] | None = None
    #: Most profiles one tick visits per partition; the others stay due for the next tick. After
    #: an outage (or on a table restored from elsewhere) most of a large table can be due at once,
    #: and one tick over all of it holds the event loop and every changed value in memory.
    tick_limit: int | None = None
    #: Most timed rule evaluations one tick runs per partition, over all its visits. A profile can
    #: have up to ``MAX_CATCH_UP`` due at once (hours of stream time between ticks in a backlog or
    #: a replay): the tick limit alone let one tick hold the loop for limit x 32 evaluations. The
    #: visits after the budget is spent stay due, and the tick is followed at once.
    tick_evaluations: int | None = None
    #: A store that reads a partition's due keys in order (RocksDB): then a tick reads them there
    #: and nothing is kept in memory, whatever the size of the table.
    sorted_index: DueKeySource | None = None
    #: Partitions whose due-key marker was seen (or written) since the start or the last rebalance.
    indexed: set[int] = field(default_factory=set)

    def forget_index(self) -> None:
        """Drop the tick index: the table's partitions changed (a rebalance), so rebuild it on next use.

        >>> memory = StageMemory(timers={0: TimerQueue()}, indexed={0})
        >>> memory.forget_index(); memory.timers is None, memory.indexed
        (True, set())
        """
        self.timers = None
        self.indexed = set()


@dataclass
class Batch:
    """Everything one batch does (see the module docstring for the order it is carried out in)."""

    #: profile_id -> (newest value, partition it is written to); each written once.
    pending: dict[str, tuple[State, int]] = field(default_factory=dict)
    #: profile-events records to send and have acknowledged before ``pending`` is written.
    handovers: list[profile_identity.Envelope] = field(default_factory=list)
    #: (output, key, document) in the order the records produced them.
    outputs: list[tuple[OutputKind, str, dict[str, Any]]] = field(default_factory=list)
    #: profile_id -> (value, stream time) to serve to Redis, once per batch.
    served: dict[str, tuple[State, float]] = field(default_factory=dict)
    #: partition -> (last offset, records) of the batch.
    last_offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: Tick-index keys (tables/due_index.py) to write (a due time, a marker) or delete (``None``),
    #: with their partition: written before ``pending``, so a value is never ahead of its due key.
    index_writes: dict[str, tuple[float | None, int]] = field(default_factory=dict)
    #: Values the batch decoded to index a partition that had no due keys yet (an older table).
    index_scanned: int = 0
    #: (index in the batch, why) of records (or pack items) dead-lettered: not valid profile-events
    #: records, or records whose application raised (``processing_error``; nothing of them applied).
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)
    duplicates: Counter[str] = field(default_factory=Counter)  # kind: offset / change_id
    redirects: Counter[str] = field(default_factory=Counter)  # cause: merged / provisional
    late_events: Counter[str] = field(default_factory=Counter)  # route: direct / redirected
    #: Partitions whose tick visited its whole limit and changed something: more may be due, so the
    #: agent sends the next tick at once. A backlog (after an outage) then drains at the pace of the
    #: event loop, a limit at a time between the events, instead of one limit per tick interval.
    ticks_to_follow: set[int] = field(default_factory=set)
    #: Records folded, each item of a pack counted (ticks and rejected records included).
    folded: int = 0
    #: Kafka records the fold took (a pack counts one).
    records: int = 0
    #: When the clickstream record of each event the batch applied was produced (epoch seconds;
    #: ``produced_at`` of the envelope), for the end-to-end latency.
    produced_at: list[float] = field(default_factory=list)

    def write_to(self, table: MutableMapping[str, Any]) -> None:
        """Write the batch's state into a plain mapping, in the agent's order: tick-index keys, then values.

        For folds without Faust (tests, benchmarks); the agent writes the same through the table,
        to each key's changelog partition.

        >>> table = {"__due__/0/0000000000001.000/p-1": 1.0}
        >>> batch = Batch(pending={"p-1": ({"v": 1}, 0)}, index_writes={"__due__/0/0000000000001.000/p-1": (None, 0)})
        >>> batch.write_to(table); table
        {'p-1': {'v': 1}}
        """
        for key, (index_value, _) in self.index_writes.items():
            if index_value is None:
                table.pop(key, None)
            else:
                table[key] = index_value
        for key, (value, _) in self.pending.items():
            table[key] = value


#: Records (or pack items) whose processing raised, after which a fold starts again without them.
#: Past this many in one fold, it is cut before the record that raised (the agent folds the rest as
#: the next batch), so a batch of failing records costs at most this many extra folds of its records.
MAX_RESTARTS = 8

#: (record index, item index or None) -> the rejection of a record or pack item the fold skips.
Skipped = dict[tuple[int, int | None], Rejection]


class _RecordFailed(Exception):
    """A record (or one item of a pack) raised while it was applied: its effects are partial."""

    def __init__(self, index: int, item: int | None, error: Exception) -> None:
        super().__init__(index, item)
        self.index, self.item, self.error = index, item, error


def fold(
    records: Sequence[Record], table: Mapping[str, Any], memory: StageMemory, wall: float,
    max_folded: int | None = None,
) -> Batch:
    """Apply ``records`` in offset order on top of ``table`` (only read); return what the batch does.

    ``wall`` is the wall-clock time of the batch: stream time before any event of a
    partition was seen, and the idle advance of stream time (:class:`~app.profiles.state.StreamClock`).
    With ``max_folded``, the fold stops after the record that brings :attr:`Batch.folded` to it
    (a pack is never cut): :attr:`Batch.records` says how many of ``records`` it took, and the
    agent folds the rest as the next batch. A backlog of packs then holds the event loop for
    ``max_folded`` events at a time, not for every event of the records Faust handed over.

    A record (or an item of a pack) whose application raises is rejected with a
    ``processing_error`` and the fold starts again without it, from the memory it began with
    (its stream clocks; the tick index is rebuilt from the table): the batch then holds the
    effects of the other records only, as if the failing one had never come.
    """
    skipped: Skipped = {}
    clock = memory.clock.copy()
    while True:
        folder = _Folder(table, memory, wall)
        try:
            folder.fold(records, max_folded, skipped)
            return folder.batch
        except _RecordFailed as failed:
            # Memory the partial fold changed goes back to how the batch found it.
            memory.clock = clock.copy()
            memory.forget_index()
            skipped[failed.index, failed.item] = processing_error("profiles", failed.error)
            if len(skipped) > MAX_RESTARTS and failed.index > 0:
                records = records[:failed.index]


def _decode(value: bytes) -> tuple[dict[str, Any], list[Any] | None]:
    """A profile-events record: its envelope, and its items when it is a pack."""
    envelope = orjson.loads(value)
    if not isinstance(envelope, dict):
        raise TypeError(f"expected an object, got {type(envelope).__name__}")
    items = envelope.get("events")
    return envelope, items if isinstance(items, list) else None


def tick_due_at(value: Any, partition: int) -> float | None:
    """When a tick of ``partition`` may change ``value`` (an open session closes, a timed rule falls due)."""
    if not isinstance(value, dict) or value.get("partition") != partition:
        return None
    return profile_stage.next_tick_at(value)


def due_key_of(profile_id: str, value: Any) -> str | None:
    """The tick-index key ``value`` calls for (tables/due_index.py), ``None`` when no tick can change it.

    >>> from app.sessions.state import ev
    >>> value, _ = profile_stage.apply_event(None, ev("e1", 1000.0), offset=0, partition=3, profile_id="p-1")
    >>> due_key_of("p-1", value), due_key_of("p-1", None)
    ('__due__/3/0000000003100.000/p-1', None)
    """
    partition = value.get("partition") if isinstance(value, dict) else None
    if not isinstance(partition, int):
        return None
    at = tick_due_at(value, partition)
    return None if at is None else due_key(partition, at, profile_id)


def _queue(timers: dict[int, TimerQueue], partition: int) -> TimerQueue:
    """The partition's queue, made on first use (not ``setdefault``, which would make one per call)."""
    queue = timers.get(partition)
    if queue is None:
        queue = timers[partition] = TimerQueue()
    return queue


class _Folder:
    """One batch's fold: the per-kind steps share ``get`` (pending, then table) and ``put``."""

    def fold(self, records: Sequence[Record], max_folded: int | None, skipped: Skipped) -> None:
        """Apply ``records`` but the ``skipped`` ones (rejected with their reason); raise
        :class:`_RecordFailed` at the first record or item whose application raises."""
        batch = self.batch
        for index, record in enumerate(records):
            if max_folded is not None and batch.folded >= max_folded:
                break
            where = f"{record.topic}:{record.partition}:{record.offset}"
            try:
                envelope, items = _decode(record.value)
            except (ValueError, TypeError) as exc:
                # Only this application writes the topic: a record that does not decode is a bug or
                # a foreign producer. Dead-lettered whole; nothing of it was applied.
                batch.rejected.append((index, Rejection("schema_violation",
                                                        f"not a valid profile-events record: {exc!r}")))
                items, envelope = [], None
            if items is None:  # one record, not a pack
                self.apply_one(index, None, envelope, At(record.partition, position(record.offset), where),
                               skipped)
            for item_index, item in enumerate(items or ()):
                at = At(record.partition, position(record.offset, item_index), f"{where}:{item_index}")
                self.apply_one(index, item_index, item, at, skipped)
            batch.folded += len(items) if items else 1
            _, count = batch.last_offsets.get(record.partition, (0, 0))
            batch.last_offsets[record.partition] = (record.offset, count + 1)
            batch.records += 1

    def apply_one(self, index: int, item: int | None, envelope: Any, at: At, skipped: Skipped) -> None:
        rejection = skipped.get((index, item))
        if rejection is not None:
            if item is not None:
                rejection = replace(rejection, message=f"events[{item}]: {rejection.message}")
            self.batch.rejected.append((index, rejection))
            return
        try:
            if not isinstance(envelope, dict):
                raise TypeError(f"expected an object, got {type(envelope).__name__}")
            self.apply(envelope, at)
        except Exception as exc:
            raise _RecordFailed(index, item, exc) from exc

    def __init__(self, table: Mapping[str, Any], memory: StageMemory, wall: float) -> None:
        self.table = table
        self.memory = memory
        self.wall = wall
        self.batch = Batch()
        #: profile_id -> the due key the table holds for it, as of this batch (None: none); a profile
        #: absent here has the key its table value calls for (:meth:`due_key_now`).
        self.due_keys: dict[str, str | None] = {}
        #: profile_id -> its value as the batch read it from the table (kept, so it is read once).
        self.read: dict[str, Any] = {}
        #: Due keys this batch wrote that were not in the table before it (moving off one deletes nothing).
        self.created: set[str] = set()

    def get(self, profile_id: str) -> Any:
        pending = self.batch.pending.get(profile_id)
        if pending is not None:
            return pending[0]
        if profile_id not in self.read:
            self.read[profile_id] = self.table.get(profile_id)
        return self.read[profile_id]

    def due_key_now(self, profile_id: str) -> str | None:
        """The profile's due key as of this batch: the one it moved to, else its table value's
        (worked out only here, when a profile is written: a read that writes nothing costs no due time)."""
        if profile_id in self.due_keys:
            return self.due_keys[profile_id]
        return due_key_of(profile_id, self.get(profile_id))

    def put(self, profile_id: str, value: State, partition: int, serve_at: float | None) -> None:
        """Chain ``value`` for the rest of the batch, keep the tick index current, maybe serve it."""
        self.move_due(profile_id, partition, tick_due_at(value, partition))
        self.batch.pending[profile_id] = (value, partition)
        if serve_at is not None:
            self.batch.served[profile_id] = (value, serve_at)

    def move_due(self, profile_id: str, partition: int, at: float | None) -> None:
        """Make ``at`` the profile's due time in the tick index (its due key, and the copy in memory)."""
        if partition not in self.memory.indexed:
            self.ensure_indexed(partition)
        old, new = self.due_key_now(profile_id), None if at is None else due_key(partition, at, profile_id)
        if old != new:
            writes = self.batch.index_writes
            if old in self.created:
                # Created by this batch and never stored: nothing to delete. Each event of an open
                # session moves its due time, so a batch would otherwise write a delete for every
                # key its earlier events made (10 index records per profile record in a drain).
                del writes[old]
                self.created.discard(old)
            elif old is not None:
                writes[old] = (None, partition)
            if new is not None:
                if new not in writes:  # a key this batch deleted is a stored one: it stays "not created"
                    self.created.add(new)
                writes[new] = (at, partition)
        self.due_keys[profile_id] = new
        if self.memory.timers is not None:
            _queue(self.memory.timers, partition).set(profile_id, at)

    def ensure_indexed(self, partition: int) -> None:
        """Index the partition the first time it is touched after a start or a rebalance: copy the due
        keys of every partition to memory (stores with unsorted keys), and give a partition that has no
        marker (a table written before due keys existed) its due keys, from one scan of its values."""
        memory = self.memory
        if partition in memory.indexed:
            return
        memory.indexed.add(partition)
        if memory.sorted_index is None and memory.timers is None:
            memory.timers = self.copy_due_keys()
        marker = indexed_key(partition)
        if marker in self.table or marker in self.batch.index_writes:
            return
        items = (memory.sorted_index.partition_items(partition) if memory.sorted_index is not None
                 else self.table.items())
        for key, value in items:  # nothing writes the table while a batch folds
            if is_index_key(key) or is_watermark_key(key) or str(key) in self.batch.pending:
                continue
            self.batch.index_scanned += 1
            profile_id = str(key)
            at = tick_due_at(value, partition)
            if at is not None:
                self.batch.index_writes[due_key(partition, at, profile_id)] = (at, partition)
                if memory.timers is not None:
                    _queue(memory.timers, partition).set(profile_id, at)
        self.batch.index_writes[marker] = (1.0, partition)

    def copy_due_keys(self) -> dict[int, TimerQueue]:
        timers: dict[int, TimerQueue] = {}
        for key in self.table:
            if isinstance(key, str) and key.startswith(DUE_PREFIX):
                partition, at, profile_id = parse_due_key(key)
                _queue(timers, partition).set(profile_id, at)
        return timers

    def due_now(self, partition: int, now: float) -> list[tuple[str, str]]:
        """``(profile_id, due key)`` of the profiles a tick visits: due at or before ``now``, the
        earliest first, at most the tick limit; in profile-id order, so a replay emits in the same order."""
        self.ensure_indexed(partition)
        limit = self.memory.tick_limit
        if self.memory.timers is not None:
            due = _queue(self.memory.timers, partition).pop_due_at(now, limit)
            return sorted((pid, due_key(partition, at, pid)) for at, pid in due)
        assert self.memory.sorted_index is not None
        found: list[tuple[float, str, str]] = []
        for key in self.memory.sorted_index.due_keys(partition):
            _, at, profile_id = parse_due_key(key)
            if at > now or (limit is not None and len(found) >= limit):
                break
            if key not in self.batch.index_writes:  # this batch deleted or rewrote it
                found.append((at, profile_id, key))
        for key, (written, written_to) in self.batch.index_writes.items():  # this batch's own, not in the store yet
            if written is not None and written <= now and written_to == partition and key.startswith(DUE_PREFIX):
                found.append((written, parse_due_key(key)[2], key))
        found.sort()
        return sorted((profile_id, key) for _, profile_id, key in found[:limit])

    def stream_now(self, partition: int, value: Any) -> float:
        """The partition's stream time; before any event was seen here, the profile's last event time."""
        now = self.memory.clock.now(partition, self.wall)
        if now is not None:
            return now
        last = (value or {}).get("profile", {}).get("last_seen") if isinstance(value, dict) else None
        return float(last) if isinstance(last, int | float) else self.wall

    def emit(self, profile_id: str, outputs: profile_stage.Outputs, value: State) -> None:
        add = self.batch.outputs.append
        for session in outputs.closed_sessions:
            add(("session_summaries", profile_id, sessions.summary(session, profile_id)))
        if outputs.closed_sessions:  # the cluster model learns a profile once per closed session
            add(("cluster_input", profile_id,
                 cluster_input.cluster_input(profile_id, value, outputs.closed_sessions[-1]["id"])))
        for change in outputs.segment_changes:
            # Keyed by the profile the change is about: a merge also emits the absorbed one's exits.
            add(("segment_changes", str(change["profile_id"]), change))

    def apply(self, envelope: dict[str, Any], at: At) -> None:
        if "tick" in envelope:
            self.tick(at.partition, float(envelope["tick"]))
            return
        profile_id = str(envelope["profile_id"])
        value = self.get(profile_id)
        partition, offset = at.partition, at.position
        if "merge_out" in envelope:
            payload = envelope["merge_out"]
            tombstone, handover = profile_identity.merge_out(value, payload, profile_id, offset, partition)
            if handover is not None:
                self.batch.handovers.append(handover)
            if tombstone != value:
                self.put(profile_id, tombstone, partition, serve_at=0.0)
        elif "revive" in envelope:
            revived = profile_identity.revive(value, envelope["revive"], offset, partition)
            if revived is not None:
                self.put(profile_id, revived, partition, self.stream_now(partition, None))
        elif profile_identity.is_tombstone(value):
            self.redirect(profile_id, value, envelope, at)
        elif "merge_in" in envelope:
            self.merge_in(profile_id, value, envelope["merge_in"], at)
        elif "split" in envelope:
            self.split(profile_id, value, envelope["split"], partition)
        elif "traits" in envelope:
            value = profile_identity.traits(value, envelope["traits"], float(envelope["ts"]), partition)
            self.put(profile_id, value, partition, self.stream_now(partition, value))
        else:
            self.event(profile_id, value, envelope, at)

    def redirect(self, profile_id: str, tombstone: State, envelope: dict[str, Any], at: At) -> None:
        """A record for an absorbed profile goes on to its survivor (events ingest stamped before the
        alias update reached it, merge_in of a chain)."""
        moved = profile_identity.redirect(tombstone, envelope, at.position)
        if moved is None:
            self.batch.duplicates["offset"] += 1
            return
        tombstone, forward = moved
        self.batch.handovers.append(forward)
        self.batch.redirects[profile_identity.merge_cause(tombstone)] += 1
        self.put(profile_id, tombstone, at.partition, serve_at=None)

    def merge_in(self, profile_id: str, value: Any, payload: dict[str, Any], at: At) -> None:
        now = self.stream_now(at.partition, payload.get("state") or value)
        value, outputs, outcome = profile_identity.merge_in(
            value, payload, at.position, at.partition, profile_id, now
        )
        if outcome != "merged":
            self.batch.duplicates["offset" if outcome == "replayed" else "change_id"] += 1
            return
        self.put(profile_id, value, at.partition, now)
        self.emit(profile_id, outputs, value)
        if not payload.get("split"):
            # The one clusters stage moves the absorbed profile's cluster membership (idempotent there).
            absorbed = str(payload["from"])
            merge = cluster_input.merge_record(absorbed, profile_id, str(payload["change_id"]), now)
            self.batch.outputs.append(("cluster_input", absorbed, merge))

    def split(self, profile_id: str, value: Any, payload: dict[str, Any], partition: int) -> None:
        now = self.stream_now(partition, value)
        kept, sends, outputs = profile_identity.split(value, payload, profile_id, now)
        if kept is None or kept is value:
            return
        self.batch.handovers.extend(sends)
        self.put(profile_id, kept, partition, now)
        self.emit(profile_id, outputs, kept)

    def event(self, profile_id: str, value: Any, envelope: dict[str, Any], at: At) -> None:
        doc = envelope["event"]
        event = Event(doc, doc["type"], doc["event_id"], doc["anonymous_id"], float(envelope["ts"]))
        self.memory.clock.observe(at.partition, event.ts, self.wall)
        replayed = at.position <= ((value or {}).get("profile") or {}).get("offset", -1)
        value, outputs = profile_stage.apply_event(
            value, event, at.position, at.partition, profile_id, monitor=self.memory.monitor, basis=at.basis,
        )
        if outputs.late_events:
            self.batch.late_events["redirected" if "redirected_from" in envelope else "direct"] += 1
        produced = envelope.get("produced_at")
        if isinstance(produced, int | float) and not replayed:
            self.batch.produced_at.append(float(produced))
        self.put(profile_id, value, at.partition, event.ts)
        self.emit(profile_id, outputs, value)

    def tick(self, partition: int, wall: float) -> None:
        now = self.memory.clock.now(partition, wall)
        if now is None:
            return
        visits = self.due_now(partition, now)
        changed = 0
        budget = self.memory.tick_evaluations
        for profile_id, key in visits:
            if budget is not None and budget <= 0:
                # Spent: the visit waits for the follow-up tick (its key stays; the copy in memory is put back).
                self.due_keys[profile_id] = key
                self.move_due(profile_id, partition, parse_due_key(key)[1])
                continue
            value = self.get(profile_id)
            self.due_keys[profile_id] = key
            at = tick_due_at(value, partition)
            if (None if at is None else due_key(partition, at, profile_id)) != key:
                # A key the value no longer calls for (a crash between writes, a restored table):
                # deleted, and the value's own written again, which also heals a missing one.
                self.due_keys[profile_id] = None
                self.batch.index_writes[key] = (None, partition)
                self.move_due(profile_id, partition, at)
                changed += 1
                if at is None or at > now:
                    continue
            if value is None or profile_identity.is_tombstone(value):
                continue
            value, outputs = profile_stage.tick(value, now, profile_id, max_evaluations=budget)
            if budget is not None:
                budget -= outputs.evaluations
            if outputs.closed_sessions or outputs.segment_changes:
                self.put(profile_id, value, partition, now)
                self.emit(profile_id, outputs, value)
                changed += 1
            elif outputs.evaluations:
                # Evaluations that changed no membership still moved the next one later: kept, or
                # the profile would stay due at its old time, re-run them at every tick and take a
                # visit from the profiles due after it.
                self.put(profile_id, value, partition, None)
                changed += 1
            else:  # due exactly now (sessions close strictly after their time): the next tick
                self.move_due(profile_id, partition, at)
        # Only a tick that changed something is followed at once: one whose visits are all due
        # exactly now would otherwise be followed by the same visits, in a loop.
        at_limit = self.memory.tick_limit is not None and len(visits) >= self.memory.tick_limit
        if changed and (at_limit or (budget is not None and budget <= 0)):
            self.batch.ticks_to_follow.add(partition)
