"""The latency probe's input continues the bench input: same customers, later times, fresh event ids."""

from __future__ import annotations

import datetime as dt
import doctest

import orjson
from hypothesis import given
from hypothesis import strategies as st

import bench.probe_input as probe_input
from app.simulator import SimConfig, iter_records
from bench.probe_input import continuation

SPAN = dt.timedelta(days=14)
END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_doctests() -> None:
    assert doctest.testmod(probe_input).failed == 0


def clickstream(seed: int, customers: int, n: int) -> list:
    config = SimConfig(seed=seed, customers=customers, days=14, end=END, max_events=n)
    return [r for r in iter_records(config) if r.topic == "clickstream"]


def parsed(value: bytes) -> dict | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


@given(seed=st.integers(0, 10_000), round_=st.integers(1, 5))
def test_a_continued_record_keeps_its_customer_and_moves_only_its_time_and_event_id(seed: int, round_: int) -> None:
    records = clickstream(seed, customers=5, n=120)
    continued = list(continuation(records, SPAN, round_))
    assert [(r.topic, r.key) for r in continued] == [(r.topic, r.key) for r in records]
    for before, after in zip(records, continued, strict=True):
        old, new = parsed(before.value), parsed(after.value)
        if old is None:
            assert after.value == before.value  # malformed input stays malformed
            continue
        assert new is not None
        assert {k: v for k, v in new.items() if k not in ("timestamp", "event_id")} == {
            k: v for k, v in old.items() if k not in ("timestamp", "event_id")
        }
        if isinstance(old.get("timestamp"), str) and old["timestamp"] != new["timestamp"]:
            moved = dt.datetime.fromisoformat(new["timestamp"]) - dt.datetime.fromisoformat(old["timestamp"])
            assert moved == SPAN * round_


@given(seed=st.integers(0, 10_000))
def test_every_round_has_fresh_event_ids_and_a_retry_stays_a_retry(seed: int) -> None:
    records = clickstream(seed, customers=5, n=200)
    ids = [d["event_id"] for d in map(parsed, (r.value for r in records)) if d and isinstance(d.get("event_id"), str)]
    seen = set(ids)
    for round_ in (1, 2):
        new_ids = [
            d["event_id"]
            for d in (parsed(r.value) for r in continuation(records, SPAN, round_))
            if d and isinstance(d.get("event_id"), str)
        ]
        assert len(new_ids) == len(ids)
        assert not seen & set(new_ids)
        # The same original id (a publisher retry) maps to the same new id, so it is still a duplicate.
        assert len(set(new_ids)) == len(set(ids))
        seen |= set(new_ids)


def test_no_continued_event_is_older_than_the_end_of_the_input_period() -> None:
    # The drain's stream clock reaches the input period's end: a probe event before it would be late.
    records = clickstream(42, customers=20, n=2000)
    start = END - SPAN
    checked = 0
    for before, after in zip(records, continuation(records, SPAN, 1), strict=True):
        old, new = parsed(before.value), parsed(after.value)
        if not (old and isinstance(old.get("timestamp"), str) and new):
            continue
        try:
            original = dt.datetime.fromisoformat(old["timestamp"])
        except ValueError:
            continue
        if start <= original <= END:  # not a deliberately out-of-range timestamp
            assert dt.datetime.fromisoformat(new["timestamp"]) >= END
            checked += 1
    assert checked > 1000
