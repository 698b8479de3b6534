"""The profiles fold isolates each record: one that raises is dead-lettered, the rest applied as if it never came."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.events.validation import Event
from app.profiles import fold as profile_batch
from app.profiles import state as profile_stage
from app.profiles.fold import Record, StageMemory, fold
from app.profiles.pack import pack
from tests.unit.test_profile_batch import TOPIC, WALL, event, initial_table, mixed_records, record

BOOM = "boom"


@pytest.fixture
def raising_on_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage's event step raises for the event id ``boom`` after it has read (and half-used) the state."""
    real = profile_stage.apply_event

    def apply_event(value: Any, event: Event, *args: Any, **kwargs: Any) -> Any:
        if event.event_id.startswith(BOOM):
            raise RuntimeError("an unforeseen value")
        return real(value, event, *args, **kwargs)

    monkeypatch.setattr(profile_stage, "apply_event", apply_event)


def outcome(batch: profile_batch.Batch) -> tuple[Any, ...]:
    return batch.pending, batch.outputs, batch.index_writes, batch.handovers, batch.served, batch.last_offsets


@pytest.mark.usefixtures("raising_on_boom")
def test_a_record_that_raises_is_dead_lettered_and_the_batch_is_what_the_others_make_alone() -> None:
    table = initial_table()
    records = mixed_records(table)
    failing = [*records[:3], event(30, "p-a", BOOM, 1011.0), *records[3:]]
    batch = fold(failing, table, StageMemory(), WALL)
    (index, rejection), = batch.rejected
    assert index == 3 and rejection.code == "processing_error"
    assert rejection.stage == "profiles" and rejection.exception == "RuntimeError"
    # The same as a fold of the batch without that record (its offset still counted as taken).
    without = fold([*records[:3], *records[3:]], table, StageMemory(), WALL)
    assert outcome(batch)[:5] == outcome(without)[:5] and batch.outputs
    assert batch.records == len(failing) and batch.last_offsets == {0: (18, len(failing))}


@pytest.mark.usefixtures("raising_on_boom")
def test_a_pack_item_that_raises_is_dead_lettered_and_the_pack_s_other_events_applied() -> None:
    items = [event(0, "p-a", "a1", 1000.0), event(0, "p-a", BOOM, 1001.0), event(0, "p-a", "a2", 1002.0)]
    (value,) = pack([r.value for r in items])
    batch = fold([Record(TOPIC, 0, 50, value)], {}, StageMemory(), WALL)
    assert [(i, r.code, r.message.split(":")[0]) for i, r in batch.rejected] == [(0, "processing_error", "events[1]")]
    assert batch.pending["p-a"][0]["profile"]["events"] == 2 and batch.folded == 3


@pytest.mark.usefixtures("raising_on_boom")
def test_a_failed_record_leaves_the_stage_memory_as_the_batch_found_it() -> None:
    # The failing event is the newest of the partition: its time must not move the stream clock;
    # the tick before it popped p-a from the tick index in the first attempt: the fold kept must close it.
    table: dict[str, Any] = {}
    memory = StageMemory()
    first = fold([event(1, "p-a", "a1", 1000.0)], table, memory, WALL)
    first.write_to(table)
    batch = fold([record(2, {"tick": WALL + 4000.0}), event(3, "p-b", BOOM, 90_000.0)], table, memory, WALL)
    assert memory.clock.now(0, WALL) == 1000.0
    assert [kind for kind, _, _ in batch.outputs].count("session_summaries") == 1  # p-a's session closed


@pytest.mark.usefixtures("raising_on_boom")
def test_a_batch_of_failing_records_is_cut_after_a_bounded_number_of_restarts() -> None:
    records = [event(i, f"p-{i}", f"{BOOM}{i}", 1000.0 + i) for i in range(40)]
    taken = 0
    rejected = 0
    while taken < len(records):
        batch = fold(records[taken:], {}, StageMemory(), WALL)
        assert 0 < batch.records <= profile_batch.MAX_RESTARTS + 1
        taken += batch.records
        rejected += len(batch.rejected)
    assert rejected == 40


def test_a_record_that_is_not_an_object_is_a_schema_violation() -> None:
    batch = fold([Record(TOPIC, 0, 1, orjson.dumps([1, 2])), record(2, {"tick": 1.0})], {}, StageMemory(), WALL)
    assert [(i, r.code) for i, r in batch.rejected] == [(0, "schema_violation")]
