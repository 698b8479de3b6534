"""The profiles stage's batch fold: a batch is the same records applied one by one, and a replay applies nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson

from app.events.positions import position
from app.events.validation import Event, Validator
from app.profiles import state as profile_stage
from app.profiles.fold import Batch, Record, StageMemory, due_key_of, fold, tick_due_at
from app.profiles.pack import pack
from app.sessions.state import ev
from app.simulator import SimConfig, iter_records
from tables.due_index import due_key, indexed_key, is_index_key, sorted_due_keys

TOPIC = "persona-stream-profile-events"
WALL = 10_000.0  # the batches' wall time; the tick below says 14 000: stream time moves 4 000 s on


def record(offset: int, doc: dict[str, Any], partition: int = 0) -> Record:
    return Record(TOPIC, partition, offset, orjson.dumps(doc))


def event(offset: int, profile_id: str, event_id: str, ts: float, event_type: str = "page_view") -> Record:
    return record(offset, {"profile_id": profile_id, "ts": ts, "event": ev(event_id, ts, event_type).data})


def initial_table() -> dict[str, Any]:
    """p-b lives on partition 1 (its state travels in a merge_in); p-c on partition 0 (merged out below)."""
    b, _ = profile_stage.apply_event(None, ev("b1", 900.0, "add_to_cart"), offset=3, partition=1, profile_id="p-b")
    c, _ = profile_stage.apply_event(None, ev("c1", 950.0), offset=2, partition=0, profile_id="p-c")
    return {"p-b": b, "p-c": c}


def mixed_records(table: dict[str, Any]) -> list[Record]:
    """Several events of p-a around a tick, a merge_in into p-a, a merge_out of p-c, an event
    stamped with p-c after it (redirected), CRM traits."""
    return [
        event(10, "p-a", "a1", 1000.0),
        event(11, "p-a", "a2", 1010.0, "product_view"),
        record(12, {"tick": 14_000.0}),  # stream time 1010 + 4000: p-a's and p-c's sessions close
        record(13, {"profile_id": "p-a", "merge_in": {"change_id": "c1", "from": "p-b", "state": table["p-b"]}}),
        event(14, "p-a", "a3", 5000.0),
        event(15, "p-a", "a3", 5000.0),  # a publisher retry: counted once
        record(16, {"profile_id": "p-c", "merge_out": {"change_id": "c2", "into": "p-a"}}),
        event(17, "p-c", "c2", 5010.0),
        record(18, {"profile_id": "p-a", "traits": {"city": "Leeds"}, "ts": 5020.0}),
    ]


def write(table: dict[str, Any], batch: Batch) -> None:
    """What the agent does with a batch's state: tick-index keys first, then the values."""
    batch.write_to(table)


def one_by_one(records: list[Record], table: dict[str, Any]) -> tuple[list[Batch], dict[str, Any]]:
    memory, batches = StageMemory(), []
    for r in records:
        batch = fold([r], table, memory, WALL)
        write(table, batch)
        batches.append(batch)
    return batches, table


def test_a_batch_gives_the_state_and_outputs_of_its_records_applied_one_by_one() -> None:
    table = initial_table()
    records = mixed_records(table)
    batch = fold(records, table, StageMemory(), WALL)
    singles, expected = one_by_one(records, initial_table())

    write(table, batch)
    assert table == expected
    assert batch.outputs == [out for single in singles for out in single.outputs]
    assert batch.handovers == [h for single in singles for h in single.handovers]
    assert batch.served == {pid: served for single in singles for pid, served in single.served.items()}
    assert set(batch.pending) == {"p-a", "p-c"}  # each written once, whatever its number of records
    assert batch.last_offsets == {0: (18, len(records))}
    # What the records did: the tick closed p-c's and p-a's sessions, p-b's state (an open session)
    # was folded into p-a and closed by p-a's next event, p-c handed over and became a tombstone,
    # its later event went on to p-a.
    summaries = [(key, doc["session_id"]) for kind, key, doc in batch.outputs if kind == "session_summaries"]
    assert summaries == [("p-a", "ses-a1"), ("p-c", "ses-c1"), ("p-a", "ses-b1")]  # a tick goes in id order
    assert table["p-a"]["merges"] == ["c1:p-b"] and table["p-a"]["profile"]["traits"]["city"] == "Leeds"
    assert table["p-a"]["profile"]["events"] == 4  # a1, a2, a3 once, b1
    assert table["p-c"]["merged_into"] == "p-a" and table["p-c"]["offset"] == position(17)
    assert [(h["profile_id"], "merge_in" in h, h.get("redirected_from")) for h in batch.handovers] == [
        ("p-a", True, None), ("p-a", False, "p-c")
    ]
    assert batch.redirects == {"merged": 1} and batch.rejected == []


def test_a_batch_replayed_after_its_writes_applies_nothing_and_emits_nothing() -> None:
    table = initial_table()
    records = mixed_records(table)
    write(table, fold(records, table, StageMemory(), WALL))
    written = dict(table)

    # A crash after the writes, before the commit: a new worker (empty memory) reads the batch again.
    replay = fold(records, table, StageMemory(), WALL)
    write(table, replay)
    assert table == written
    assert replay.outputs == [] and replay.handovers == []
    assert replay.duplicates["offset"] >= 1  # the record for the tombstone is recognised as a replay


def test_a_batch_replayed_before_its_writes_sends_the_same_handovers_again() -> None:
    # A crash after the handovers were acknowledged, before the states were written: the replay
    # finds the old states and sends the same records again (each a no-op where it arrives).
    table = initial_table()
    records = mixed_records(table)
    first = fold(records, table, StageMemory(), WALL)
    again = fold(records, table, StageMemory(), WALL)
    assert again.handovers == first.handovers and again.pending == first.pending
    assert again.outputs == first.outputs  # same ids: downstream stages and consumers dedupe


def test_a_tick_after_a_restart_closes_sessions_of_profiles_that_got_no_event_since() -> None:
    table = initial_table()  # p-c has an open session on partition 0
    batch = fold([event(20, "p-d", "d1", 1000.0), record(21, {"tick": 14_000.0})], table, StageMemory(), WALL)
    closed = {doc["profile_id"] for kind, _, doc in batch.outputs if kind == "session_summaries"}
    assert closed == {"p-c", "p-d"}


class CountingTable(dict[str, Any]):
    """A table that counts how often it is scanned."""

    scans = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.scans += 1
        return super().__iter__()


def test_one_scan_of_the_table_indexes_every_partition_after_a_restart() -> None:
    table = CountingTable(initial_table())  # open sessions: p-b on partition 1, p-c on partition 0
    memory = StageMemory()
    fold([event(20, "p-d", "d1", 1000.0), record(21, {"tick": 14_000.0})], table, memory, WALL)
    partition_1 = [event(5, "p-e", "e1", 1000.0), record(6, {"tick": 14_000.0}, partition=1)]
    batch = fold([r._replace(partition=1) for r in partition_1], table, memory, WALL)
    assert table.scans == 1
    assert {doc["profile_id"] for kind, _, doc in batch.outputs if kind == "session_summaries"} == {"p-b", "p-e"}


class CountingReads(dict[str, Any]):
    """A table that counts reads of values."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def test_a_tick_reads_only_the_profiles_whose_session_or_rule_is_due() -> None:
    table = CountingReads(initial_table())  # p-c: a session open since 950 on partition 0, due after 3050
    for i in range(50):  # sessions open since 5000: due after 7100
        table[f"p-late-{i}"], _ = profile_stage.apply_event(
            None, ev(f"l{i}", 5000.0), offset=100 + i, partition=0, profile_id=f"p-late-{i}")
    memory = StageMemory()
    write(table, fold([event(20, "p-d", "d1", 1000.0)], table, memory, WALL))  # builds the index
    table.reads = 0
    batch = fold([record(21, {"tick": WALL + 2500.0})], table, memory, WALL)  # stream time 1000 + 2500
    assert {doc["profile_id"] for kind, _, doc in batch.outputs if kind == "session_summaries"} == {"p-c", "p-d"}
    assert table.reads == 2


def test_a_tick_visits_at_most_its_limit_and_the_next_tick_the_rest() -> None:
    table: dict[str, Any] = {}
    for i in range(5):  # sessions open since 950 + i on partition 0: due in that order
        table[f"p-{i}"], _ = profile_stage.apply_event(
            None, ev(f"e{i}", 950.0 + i), offset=10 + i, partition=0, profile_id=f"p-{i}")
    memory = StageMemory(tick_limit=2)
    write(table, fold([event(20, "p-d", "d1", 1000.0)], table, memory, WALL))  # the stream clock starts

    def closed(batch: Batch) -> list[str]:
        return [doc["profile_id"] for kind, _, doc in batch.outputs if kind == "session_summaries"]

    ticks, followed = [], []
    for offset in (21, 22, 23, 24):  # stream time 1000 + 2500: every session above is due
        batch = fold([record(offset, {"tick": WALL + 2500.0})], table, memory, WALL)
        write(table, batch)
        ticks.append(closed(batch))
        followed.append(batch.ticks_to_follow)
    assert ticks == [["p-0", "p-1"], ["p-2", "p-3"], ["p-4", "p-d"], []]  # earliest due first
    # Each tick that visited its whole limit asks for the next at once; the one that found nothing does not.
    assert followed == [{0}, {0}, {0}, set()]


def test_a_tick_at_its_limit_that_changes_nothing_is_not_followed() -> None:
    table: dict[str, Any] = {}
    memory = StageMemory(tick_limit=1)
    write(table, fold([event(20, "p-d", "d1", 1000.0)], table, memory, WALL))
    due = tick_due_at(table["p-d"], 0)
    assert due is not None
    # A tick at exactly the due time visits the profile but closes nothing (sessions close strictly after).
    batch = fold([record(21, {"tick": WALL + (due - 1000.0)})], table, memory, WALL)
    assert not batch.outputs and batch.ticks_to_follow == set()


def test_a_rebalance_rebuilds_the_tick_index_from_the_recovered_table() -> None:
    memory = StageMemory()
    fold([record(21, {"tick": 1_000.0})], {}, memory, WALL)  # partition 0 indexed while the table was empty
    memory.forget_index()  # partitions assigned again: partition 1's profiles were recovered meanwhile
    partition_1 = [event(5, "p-e", "e1", 1000.0), record(6, {"tick": 14_000.0})]
    batch = fold([r._replace(partition=1) for r in partition_1], initial_table(), memory, WALL)
    assert {doc["profile_id"] for kind, _, doc in batch.outputs if kind == "session_summaries"} == {"p-b", "p-e"}


def test_an_invalid_record_is_rejected_and_the_rest_of_the_batch_applied() -> None:
    records = [Record(TOPIC, 0, 30, b"{not json"), record(31, {"no_profile_id": 1}), event(32, "p-a", "a1", 1000.0)]
    batch = fold(records, {}, StageMemory(), WALL)
    assert [index for index, _ in batch.rejected] == [0, 1]
    assert batch.pending["p-a"][0]["profile"]["events"] == 1
    assert batch.last_offsets == {0: (32, 3)}


def packed(offset: int, records: list[Record], partition: int = 0) -> Record:
    """The records' values carried by one pack (app/profiles/pack.py), as ingest sends them."""
    (value,) = pack([r.value for r in records])
    return Record(TOPIC, partition, offset, value)


def without_ids(outputs: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str, dict[str, Any]]]:
    """Outputs without the fields that name the input position (a pack's items have their own)."""
    return [(kind, key, {k: v for k, v in doc.items() if k not in ("change_id", "basis")})
            for kind, key, doc in outputs]


def pack_events() -> list[Record]:
    return [
        event(40, "p-a", "a1", 1000.0),
        event(41, "p-d", "d1", 1001.0, "add_to_cart"),
        event(42, "p-a", "a2", 1010.0, "product_view"),
        event(43, "p-a", "a2", 1010.0, "product_view"),  # a publisher retry: counted once
        event(44, "p-d", "d2", 1020.0, "purchase"),
    ]


def test_a_pack_gives_the_states_and_outputs_of_its_events_sent_one_record_each() -> None:
    singles = fold(pack_events(), {}, StageMemory(), WALL)
    one = fold([packed(40, pack_events())], {}, StageMemory(), WALL)

    def counts(batch: Batch) -> dict[str, Any]:
        return {pid: (v["profile"]["events"], v["sessions"]["open"]) for pid, (v, _) in batch.pending.items()}

    assert counts(one) == counts(singles) and set(one.pending) == {"p-a", "p-d"}
    assert without_ids(one.outputs) == without_ids(singles.outputs) and one.outputs
    assert one.folded == singles.folded == 5 and one.last_offsets == {0: (40, 1)}
    assert one.duplicates == singles.duplicates
    # Each item has its own position, after every position of the records before it.
    assert one.pending["p-d"][0]["profile"]["offset"] == position(40, 4)


def test_a_replayed_pack_applies_none_of_its_events_again() -> None:
    table: dict[str, Any] = {}
    first = fold([packed(40, pack_events())], table, StageMemory(), WALL)
    write(table, first)
    written = dict(table)
    replay = fold([packed(40, pack_events())], table, StageMemory(), WALL)
    write(table, replay)
    assert table == written and replay.outputs == [] and replay.produced_at == []
    later = fold([packed(41, [event(45, "p-a", "a9", 1030.0)])], table, StageMemory(), WALL)
    assert later.pending["p-a"][0]["profile"]["events"] == 3  # the next pack still applies


def test_a_bad_item_of_a_pack_is_rejected_and_the_pack_s_other_events_applied() -> None:
    bad = Record(TOPIC, 0, 0, orjson.dumps({"no_profile_id": 1}))
    batch = fold([packed(50, [event(0, "p-a", "a1", 1000.0), bad, event(0, "p-a", "a2", 1001.0)])],
                 {}, StageMemory(), WALL)
    assert [(index, reason.code, reason.message.split(":")[0]) for index, reason in batch.rejected] == [
        (0, "processing_error", "events[1]")]
    assert batch.pending["p-a"][0]["profile"]["events"] == 2


def test_each_applied_event_reports_when_its_clickstream_record_was_produced() -> None:
    table = initial_table()
    stamped = record(30, {"profile_id": "p-a", "ts": 1000.0, "event": ev("e1", 1000.0).data, "produced_at": 77.5})
    unstamped = event(31, "p-a", "e2", 1001.0)  # a record from before the field existed
    replayed = record(30, {"profile_id": "p-a", "ts": 1000.0, "event": ev("e1", 1000.0).data, "produced_at": 77.5})
    batch = fold([stamped, unstamped], table, StageMemory(), WALL)
    assert batch.produced_at == [77.5]
    write(table, batch)
    assert fold([replayed], table, StageMemory(), WALL).produced_at == []  # a replay applies nothing


def closed_sessions(batch: Batch) -> list[str]:
    return [doc["profile_id"] for kind, _, doc in batch.outputs if kind == "session_summaries"]


def due_keys_of(table: dict[str, Any]) -> list[str]:
    return sorted(k for k in table if is_index_key(k))


def test_a_table_written_before_due_keys_gets_them_and_a_marker_from_one_scan() -> None:
    table = initial_table()  # no index keys: p-c's session (partition 0) is due after 3050
    write(table, fold([event(20, "p-d", "d1", 1000.0)], table, StageMemory(), WALL))
    assert due_keys_of(table) == [due_key(0, 3050.0, "p-c"), due_key(0, 3100.0, "p-d"), indexed_key(0)]
    # Partition 1 is indexed the first time it is touched: p-b (a cart) is due at 2700.
    write(table, fold([event(5, "p-e", "e1", 1000.0)._replace(partition=1)], table, StageMemory(), WALL))
    assert due_key(1, 2700.0, "p-b") in table and indexed_key(1) in table


def test_a_due_key_moves_with_its_profile_and_goes_when_nothing_is_due() -> None:
    table: dict[str, Any] = {}
    memory = StageMemory()
    write(table, fold([event(1, "p-a", "a1", 1000.0)], table, memory, WALL))
    write(table, fold([event(2, "p-a", "a2", 1200.0)], table, memory, WALL))
    assert due_keys_of(table) == [due_key(0, 3300.0, "p-a"), indexed_key(0)]  # 1200 + 35 min
    write(table, fold([record(3, {"tick": WALL + 5000.0})], table, memory, WALL))  # closes the session
    assert due_keys_of(table) == [due_key(0, 1000.0 + 7 * 86400, "p-a"), indexed_key(0)]  # a 7-day window since a1 ends
    write(table, fold([record(4, {"profile_id": "p-a", "merge_out": {"change_id": "c1", "into": "p-z"}})],
                      table, memory, WALL))
    assert due_keys_of(table) == [indexed_key(0)]  # a tombstone: no tick can change it


class SortedIndex:
    """A store with sorted keys (as RocksDB): the tick reads due keys from it, never the whole table."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table

    def due_keys(self, partition: int) -> Iterator[str]:
        raw = sorted(orjson.dumps(k) for k in dict.keys(self.table))  # as the store reads them
        return sorted_due_keys(iter(raw), partition)

    def partition_items(self, partition: int) -> Iterator[tuple[Any, Any]]:
        return ((k, v) for k, v in list(self.table.items()) if isinstance(v, dict) and v.get("partition") == partition)


class UnscannableTable(dict[str, Any]):
    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the table was scanned")


def test_with_a_sorted_store_a_tick_reads_due_keys_there_and_never_scans_the_table() -> None:
    def run(table: dict[str, Any], memory: StageMemory) -> list[list[str]]:
        write(table, fold([event(1, "p-a", "a1", 1000.0), event(2, "p-b", "b1", 1100.0)], table, memory, WALL))
        ticks = []
        for offset, tick_at in ((3, 12_000.0), (4, 12_200.0), (5, 12_300.0)):  # every session is due by then
            batch = fold([event(offset * 10, "p-c", f"c{offset}", 3000.0), record(offset, {"tick": tick_at})],
                         table, memory, WALL)
            write(table, batch)
            ticks.append(closed_sessions(batch))
        return ticks

    sorted_table = UnscannableTable()
    in_memory = run({}, StageMemory(tick_limit=1))
    assert run(sorted_table, StageMemory(tick_limit=1, sorted_index=SortedIndex(sorted_table))) == in_memory
    assert in_memory == [["p-a"], ["p-b"], ["p-c"]]  # one per tick (the limit), the earliest due first


def test_a_due_key_the_value_no_longer_calls_for_is_deleted_and_the_right_one_written() -> None:
    table = initial_table()
    memory = StageMemory()
    write(table, fold([event(20, "p-d", "d1", 1000.0)], table, memory, WALL))
    right = due_key(0, 3050.0, "p-c")
    del table[right]  # a crash lost it, and left a key the value does not call for
    table[due_key(0, 2000.0, "p-c")] = 2000.0
    restarted = StageMemory(sorted_index=SortedIndex(table))
    write(table, fold([event(21, "p-d", "d2", 1000.0), record(22, {"tick": WALL + 1500.0})],
                      table, restarted, WALL))  # stream time 1000 + 1500
    assert due_key(0, 2000.0, "p-c") not in table and right in table
    batch = fold([record(23, {"tick": WALL + 2100.0})], table, restarted, WALL)  # stream time 3100
    assert closed_sessions(batch) == ["p-c"]


def test_a_fold_with_an_event_limit_stops_after_the_record_that_reaches_it() -> None:
    records = [packed(60, pack_events()[:3]), packed(61, pack_events()[3:]), event(62, "p-e", "e1", 1000.0)]
    first = fold(records, {}, StageMemory(), WALL, max_folded=2)  # the first pack alone is 3 events: never cut
    assert (first.records, first.folded, first.last_offsets) == (1, 3, {0: (60, 1)})
    rest = fold(records[first.records:], {}, StageMemory(), WALL, max_folded=2)
    assert (rest.records, rest.folded) == (1, 2)  # the second pack (2 events) reaches it: the event waits


def test_a_batch_of_one_profile_s_events_writes_one_due_key_and_deletes_only_the_stored_one() -> None:
    table: dict[str, Any] = {}
    write(table, fold([event(70, "p-a", "a1", 1000.0)], table, StageMemory(), WALL))
    (stored,) = [key for key in due_keys_of(table) if key != indexed_key(0)]
    # Each event moves the session's close: the keys the batch made on the way are never written.
    batch = fold([event(71 + i, "p-a", f"a{i + 2}", 1010.0 + 10 * i) for i in range(5)], table, StageMemory(), WALL)
    writes = {key: value for key, value in batch.index_writes.items() if key != indexed_key(0)}
    assert writes[stored][0] is None  # the stored key goes
    assert [key for key, (at, _) in writes.items() if at is not None] == [tick_due_key(batch, "p-a")]
    assert len(writes) == 2
    write(table, batch)
    assert [key for key in due_keys_of(table) if key != indexed_key(0)] == [tick_due_key(batch, "p-a")]


def tick_due_key(batch: Batch, profile_id: str) -> str:
    value, partition = batch.pending[profile_id]
    at = tick_due_at(value, partition)
    assert at is not None
    return due_key(partition, at, profile_id)


def engaged_then_quiet(memory: StageMemory) -> dict[str, Any]:
    """p-a views products 5 times from 1000 s on: highly_engaged from the 4th view (1300 s), held
    at least an hour (min_dwell), so it is evaluated again at 4900 s, still engaged: no change.
    Its session closes at the first tick; p-b's events move the stream clock to 6000 s."""
    table: dict[str, Any] = {}
    views = [event(10 + i, "p-a", f"a{i}", 1000.0 + 100 * i, "product_view") for i in range(5)]
    write(table, fold([*views, event(15, "p-b", "b1", 4_000.0)], table, memory, WALL))
    write(table, fold([record(16, {"tick": WALL + 1.0})], table, memory, WALL))  # p-a's session closes
    assert "highly_engaged" in table["p-a"]["segments"]["members"]["segments"]
    assert table["p-a"]["next_eval_at"] == 4_900.0
    write(table, fold([event(17, "p-b", "b2", 6_000.0)], table, memory, WALL))
    return table


def test_a_tick_keeps_an_evaluation_that_changed_no_membership() -> None:
    memory = StageMemory(tick_limit=1)
    table = engaged_then_quiet(memory)
    batch = fold([record(18, {"tick": WALL + 1.0})], table, memory, WALL)
    assert not batch.outputs  # still engaged at 4900 s
    write(table, batch)
    # The evaluation moved the next one on; before, the value was dropped and p-a stayed due at
    # 4900 s, re-evaluated by every tick and taking the tick's one visit from every other profile.
    assert table["p-a"]["next_eval_at"] == 90_000.0
    assert due_key(0, 4_900.0, "p-a") not in table and due_key_of("p-a", table["p-a"]) in table
    again = fold([record(19, {"tick": WALL + 2.0})], table, memory, WALL)
    assert not again.pending and not again.index_writes  # nothing due at 6002 s: nothing visited
    # p-b's first session (due 6100 s) is the next tick's one visit, not p-a again.
    later = fold([record(20, {"tick": WALL + 1_200.0})], table, memory, WALL)
    assert [doc["profile_id"] for kind, _, doc in later.outputs if kind == "session_summaries"] == ["p-b"]


def test_a_tick_s_evaluation_budget_leaves_the_rest_due_for_its_follow_up() -> None:
    def changes(budget: int | None) -> list[list[tuple[str, str]]]:
        memory = StageMemory(tick_limit=5, tick_evaluations=budget)
        table = engaged_then_quiet(memory)
        out = []
        for offset in range(18, 40):  # stream time 6000 + 605 000: p-a's three evaluations are all due
            batch = fold([record(offset, {"tick": WALL + 605_000.0})], table, memory, WALL)
            write(table, batch)
            out.append([(doc["profile_id"], doc["segment_id"], doc["change"], doc["at"])
                        for kind, _, doc in batch.outputs if kind == "segment_changes"])
            if not batch.ticks_to_follow:
                break
        return out

    (all_at_once,) = changes(None)  # every due evaluation in one tick
    assert [(p, segment) for p, segment, _, _ in all_at_once if p == "p-a"] == [
        ("p-a", "highly_engaged"), ("p-a", "new_visitor")]
    # One evaluation per tick: a tick that spends its budget asks for the next at once, and the
    # same changes come out, in the same order and dated the same, over the follow-ups.
    one_each = changes(1)
    assert len(one_each) > 3 and all(len(tick) <= 1 for tick in one_each)
    assert [c for tick in one_each for c in tick] == all_at_once


def test_ticks_emit_every_timed_change_that_fell_due_for_profiles_gone_quiet() -> None:
    # A simulated clickstream folded in packs with a tick after each, then only ticks for 11 days
    # of stream time: afterwards no profile may hold a due evaluation that still changes something.
    # Before ticks kept evaluations that changed nothing, profiles re-running the same ones at every
    # tick took its visits, and profiles due after them never got their exits (125 of 250 customers
    # in the bench input kept a due change that no tick emitted).
    config = SimConfig(seed=5, customers=80, days=14, end=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), max_events=5000)
    validator, docs = Validator(), []
    for sim in iter_records(config):
        if sim.topic != "clickstream":
            continue
        for item in validator.clickstream_items(sim.value, now=1767225600.0):
            if isinstance(item.result, Event):
                pid = f"p-{item.result.anonymous_id}"
                docs.append(orjson.dumps({"profile_id": pid, "ts": item.result.ts, "event": item.result.data}))
    table: dict[str, Any] = {}
    memory = StageMemory(tick_limit=20, tick_evaluations=100)
    offset, wall = 0, WALL
    for start in range(0, len(docs), 200):
        (value,) = pack(docs[start:start + 200])
        write(table, fold([Record(TOPIC, 0, offset, value)], table, memory, wall))
        wall += 5.0
        write(table, fold([record(offset + 1, {"tick": wall})], table, memory, wall))
        offset += 2
    for _ in range(200):
        wall += 5_000.0
        write(table, fold([record(offset, {"tick": wall})], table, memory, wall))
        offset += 1
    now = memory.clock.now(0, wall)
    assert now is not None
    left = {}
    for profile_id, value in table.items():
        if isinstance(value, dict) and "segments" in value:
            value, changes = profile_stage.catch_up(value, now, profile_id)
            if changes:
                left[profile_id] = changes
    assert not left
