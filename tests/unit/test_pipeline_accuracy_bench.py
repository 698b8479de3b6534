"""The scoring of bench/pipeline_accuracy.py and the shared bench harness (no broker: pure functions)."""

from __future__ import annotations

import doctest

import orjson
import pytest
from aiokafka.partitioner import murmur2

import bench.harness as harness
import bench.pipeline_accuracy as bench
from app.events.validation import Event, Validator
from app.identity.hashing import profile_id_for


def test_doctests() -> None:
    assert doctest.testmod(bench).failed == 0
    assert doctest.testmod(harness).failed == 0


@pytest.mark.parametrize("partitions", [1, 2, 4, 8])
def test_one_clock_event_lands_in_every_profile_events_partition(partitions: int) -> None:
    anons = bench.clock_anonymous_ids(partitions)
    landed = [
        (murmur2(profile_id_for(bench.anon_hash(a)).encode()) & 0x7FFFFFFF) % partitions for a in anons
    ]
    assert landed == list(range(partitions))


def test_the_clock_event_is_a_valid_clickstream_event_at_the_wall_clock() -> None:
    event = Validator.default().clickstream(bench.clock_event("bench-clock-0", 1_800_000_000.0), now=1_800_000_000.0)
    assert isinstance(event, Event) and event.ts == 1_800_000_000.0


def test_a_session_cut_in_two_by_a_profile_change_is_counted_as_such_not_matched() -> None:
    true = {("c1", 0, 60_000)}
    pieces = [
        {"session_id": "ses-e1", "start": "1970-01-01T00:00:00Z", "end": "1970-01-01T00:00:20Z"},
        {"session_id": "ses-e5", "start": "1970-01-01T00:00:30Z", "end": "1970-01-01T00:01:00Z"},
    ]
    scores = bench.session_scores(pieces, true, {"e1": "c1", "e5": "c1"})
    assert (scores["matched"], scores["split_by_profile_change"], scores["precision"]) == (0, 1, 0.0)


def test_a_summary_replayed_at_least_once_is_counted_once() -> None:
    s = {"session_id": "ses-e1", "start": "1970-01-01T00:00:00Z", "end": "1970-01-01T00:00:20Z"}
    scores = bench.session_scores([s, s], {("c1", 0, 20_000)}, {"e1": "c1"})
    assert (scores["agreement"], scores["precision"], scores["duplicate_summaries"]) == (1.0, 1.0, 1)


def test_outputs_follow_chained_merges_to_the_surviving_profile() -> None:
    sessions = [{"session_id": "ses-e1", "profile_id": "p-9", "end": "1970-01-01T00:00:01Z"}]
    merges = [
        {"change": "merged", "profile_id": "p-5", "absorbed_profile_ids": ["p-9"]},
        {"change": "merged", "profile_id": "p-1", "absorbed_profile_ids": ["p-5"]},
    ]
    assert bench.output_assignment(sessions, merges, {"e1": "h1"}) == {"h1": "p-1"}


def test_schema_report_counts_invalid_records_per_topic() -> None:
    good = orjson.loads(next((bench.SCHEMA_DIR / "examples" / "segment-changes").glob("*.json")).read_bytes())
    report = bench.schema_report({"segment-changes": [good, {**good, "change": "flapped"}]})
    assert report["segment-changes"]["records"] == 2 and report["segment-changes"]["invalid"] == 1
