"""Publisher-side batches built by the simulator: every event once, each visitor's in order, within the limits."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from app.events.validation import Validator
from app.simulator.batches import batch_records
from app.simulator.record import SimRecord

visits = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(min_value=0, max_value=40)), max_size=50)


def stream(visits: list[tuple[str, int]]) -> list[SimRecord]:
    records, clock = [], 0
    for i, (visitor, step) in enumerate(visits):
        clock += step
        doc = {"schema_version": 1, "event_id": f"e{i}", "type": "page_view", "anonymous_id": visitor,
               "timestamp": f"2026-01-01T{clock // 3600:02d}:{clock // 60 % 60:02d}:{clock % 60:02d}Z"}
        records.append(SimRecord("clickstream", visitor.encode(), orjson.dumps(doc), None))
    return records


@given(visits, st.integers(min_value=1, max_value=5))
def test_batches_carry_every_event_once_in_each_visitor_s_order(visits: list[tuple[str, int]], limit: int) -> None:
    records = stream(visits)
    batches = list(batch_records([*records, SimRecord("clickstream", b"x", b"{not json", None)], max_events=limit))
    assert batches[-1].value == b"{not json" or b"{not json" in [b.value for b in batches]  # passed on alone
    events: list[dict[str, object]] = []
    for batch in (b for b in batches if b.value != b"{not json"):
        doc = orjson.loads(batch.value)
        assert 1 <= len(doc["events"]) <= limit
        assert {e["anonymous_id"] for e in doc["events"]} == {batch.key.decode()}  # type: ignore[union-attr]
        events.extend(doc["events"])
    assert sorted(e["event_id"] for e in events) == sorted(f"e{i}" for i in range(len(visits)))  # type: ignore[type-var]
    for visitor in "abc":
        mine = [e["event_id"] for e in events if e["anonymous_id"] == visitor]
        assert mine == [orjson.loads(r.value)["event_id"] for r in records if r.key == visitor.encode()]


def test_a_simulated_batch_is_a_valid_batch_record() -> None:
    (batch,) = batch_records(stream([("a", 0), ("a", 3)]), max_events=10)
    items = Validator().clickstream_items(batch.value, now=1767225600.0)
    assert [item.batch_index for item in items] == [0, 1]


@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40), st.integers(400, 3000))
def test_a_batch_record_stays_within_max_bytes_wrapper_included(pads: list[int], max_bytes: int) -> None:
    records = []
    for i, pad in enumerate(pads):
        doc = {"event_id": f"e{i}", "anonymous_id": "a" * 60, "timestamp": "2026-01-01T00:00:00Z", "p": "x" * pad}
        records.append(SimRecord("clickstream", b"a", orjson.dumps(doc), None))
    batches = list(batch_records(records, max_events=1000, max_bytes=max_bytes))
    assert sum(len(orjson.loads(b.value)["events"]) for b in batches) == len(pads)
    for batch in batches:
        assert len(batch.value) <= max_bytes or len(orjson.loads(batch.value)["events"]) == 1
