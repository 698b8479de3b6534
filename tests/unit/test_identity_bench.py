"""The scoring of bench/identity_accuracy.py (used by the benchmark and the partitioning test)."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime

import orjson

import bench.identity_accuracy as bench
from app.runtime.settings import Topics
from app.simulator import SimRecord


def test_doctests() -> None:
    assert doctest.testmod(bench).failed == 0


def test_pairwise_counts_pairs_and_ignores_unscored_ids() -> None:
    truth = {"a": "x", "b": "x", "c": "y", "d": "y"}
    scores = bench.pairwise({"a": "p", "b": "p", "c": "p", "d": "q", "z": "p"}, truth)
    assert (scores.ids, scores.true_pairs, scores.predicted_pairs, scores.correct_pairs) == (4, 2, 3, 1)
    assert scores.precision == 1 / 3 and scores.recall == 1 / 2
    assert bench.pairwise({"a": "p"}, truth, keep=["a"]).precision == 1.0  # no pair: nothing wrong


def _event(anon: str, event_id: str, **extra: object) -> SimRecord:
    doc = {"schema_version": 1, "event_id": event_id, "type": "page_view", "anonymous_id": anon, **extra}
    return SimRecord("clickstream", anon.encode(), orjson.dumps(doc), {"customer_id": "c"})


def test_the_ceiling_joins_anonymous_ids_by_any_shared_identifier() -> None:
    records = [
        _event("a1", "e1", user_id="u1"),
        _event("a2", "e2", context={"device": {"id": "d1"}}),
        _event("a3", "e3", user_id="u1", context={"device": {"id": "d1"}}),
        _event("a4", "e4"),
    ]
    components = bench.exact_identifier_components(records)
    assert len(components) == 4
    assert len(bench.clusters(components)) == 2  # {a1, a2, a3} and {a4}


def test_expected_keeps_valid_records_and_marks_identifiable_anonymous_ids() -> None:
    records = bench.simulated(
        seed=3, customers=10, end=datetime(2026, 1, 1, tzinfo=UTC), max_events=400, topics=Topics()
    )
    exp = bench.expected(records, now=datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    assert 0 < len(exp.identifiable) <= len(exp.truth) and len(exp.valid) < len(records)
    assert set(exp.truth.values()) <= {r.truth["customer_id"] for r in records if r.truth}
