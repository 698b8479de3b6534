"""Pure helpers of the throughput benchmark (bench/stats.py) and the Quix config shim."""

from __future__ import annotations

import math

import pytest

from bench.stats import (
    SCENARIO_FIELDS,
    add_ratios,
    check_results,
    cpu_per_1000,
    events_per_second,
    histogram_delta,
    histogram_quantile,
    json_safe,
    latency_summary,
    package_of,
    percentile,
    profile_summary,
    ratio,
    self_time_by_package,
    targets,
)


def test_percentile_matches_numpy_linear() -> None:
    np = pytest.importorskip("numpy")
    values = [0.3, 0.1, 5.0, 2.2, 0.7, 0.9, 1.1]
    for q in (0, 1, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_empty_and_bad_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_in_ms() -> None:
    summary = latency_summary([0.001, 0.002, 0.003])
    assert summary["events"] == 3
    assert summary["p50_ms"] == pytest.approx(2.0)
    assert summary["max_ms"] == pytest.approx(3.0)
    assert math.isnan(latency_summary([])["p99_ms"])


def test_histogram_quantile_like_prometheus() -> None:
    buckets = [(0.005, 10.0), (0.01, 60.0), (0.025, 90.0), (0.05, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(buckets, 0.1) == pytest.approx(0.005)
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.005 + 0.005 * 40 / 50)
    assert histogram_quantile(buckets, 0.99) == pytest.approx(0.025 + 0.025 * 9 / 10)
    # Everything beyond the last finite bound: that bound (a lower bound of the truth).
    assert histogram_quantile([(0.1, 0.0), (math.inf, 5.0)], 0.5) == pytest.approx(0.1)
    assert math.isnan(histogram_quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5))
    with pytest.raises(ValueError):
        histogram_quantile([(0.1, 1.0)], 0.5)


def test_histogram_delta_subtracts_the_earlier_scrape() -> None:
    before = {0.01: 5.0, math.inf: 7.0}
    after = {0.01: 15.0, math.inf: 20.0}
    assert histogram_delta(before, after) == [(0.01, 10.0), (math.inf, 13.0)]


def test_rates_and_ratios() -> None:
    assert events_per_second(101, 0.0, 2.0) == 50.0
    with pytest.raises(ValueError):
        events_per_second(10, 1.0, 1.0)
    assert cpu_per_1000(3.0, 6000) == 0.5
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(None, 4.0) is None
    assert ratio(2.0, 0.0) is None
    assert ratio(math.nan, 1.0) is None


def _scenario(name: str, rate: float, p99: float) -> dict[str, object]:
    return {
        "name": name,
        "description": name,
        "events": 1000,
        "events_per_s": rate,
        "drain_seconds": 1000 / rate,
        "cpu_seconds_per_1000": 0.1,
        "peak_rss_mb": 100.0,
        "latency": {
            "method": "m",
            "rate": rate / 2,
            "seconds": 10.0,
            "events": 10,
            "p50_ms": 1.0,
            "p99_ms": p99,
            "max_ms": p99,
        },
        "ratio_to_quix": None,
        "processes": [],
    }


def test_ratios_targets_and_document_shape() -> None:
    scenarios = {
        "faust_passthrough": _scenario("faust_passthrough", 10_000.0, 5.0),
        "quix_count": _scenario("quix_count", 40_000.0, 5.0),
        "pipeline_1w": _scenario("pipeline_1w", 2_000.0, 40.0),
        "pipeline_2w": _scenario("pipeline_2w", 3_000.0, 60.0),
    }
    ratios = add_ratios(scenarios)
    assert ratios["pipeline_1w_to_quix"] == pytest.approx(0.05)
    assert ratios["pipeline_2w_to_1w"] == pytest.approx(1.5)
    assert scenarios["quix_count"]["ratio_to_quix"] == pytest.approx(1.0)
    goals = targets(scenarios, ratios)
    assert goals["pipeline_1w >= 1.0x quix"]["met"] is False
    assert goals["pipeline_2w >= 1.7x pipeline_1w"]["met"] is False
    assert goals["pipeline_1w p99 <= 50 ms at half max rate"]["met"] is True
    assert goals["pipeline_2w p99 <= 50 ms at half max rate"]["met"] is False
    document = {
        "started_at": "t",
        "command": "persona bench",
        "machine": {},
        "input": {},
        "scenarios": scenarios,
        "ratios": ratios,
        "targets": goals,
    }
    assert check_results(document) == []
    broken = {**document, "scenarios": {"nope": {}}}
    problems = check_results(broken)
    assert "unknown scenario 'nope'" in problems
    assert len([p for p in problems if p.startswith("nope: missing")]) == len(SCENARIO_FIELDS)
    assert check_results({}) != []


def test_targets_unknown_when_not_measured() -> None:
    scenarios = {"pipeline_1w": _scenario("pipeline_1w", 2_000.0, math.nan)}
    goals = targets(scenarios, add_ratios(scenarios))
    assert goals["pipeline_1w >= 1.0x quix"]["met"] is None
    assert goals["pipeline_1w p99 <= 50 ms at half max rate"]["met"] is None


def test_profile_summary_self_and_inclusive() -> None:
    lines = ["main;loop;handler;write 6\n", "main;loop;handler 2\n", "main;loop;idle 2\n", "garbage\n"]
    summary = profile_summary(lines, top=3)
    assert summary["self"][0] == ("write", 60.0)
    assert dict(summary["inclusive"])["handler"] == 80.0
    assert summary["inclusive"][0][1] == 100.0
    assert profile_summary([]) == {"self": [], "inclusive": []}


def test_recursive_frame_counted_once_inclusive() -> None:
    assert dict(profile_summary(["a;a;b 4"])["inclusive"])["a"] == 100.0


def test_quix_shim_fills_missing_retention() -> None:
    pytest.importorskip("quixstreams")
    from quixstreams.models.topics.admin import TopicAdmin
    from quixstreams.models.topics.topic import TopicConfig

    from bench.quix_count import tolerate_missing_topic_configs

    original = TopicAdmin.inspect_topics
    try:
        TopicAdmin.inspect_topics = lambda self, names, timeout=30: {  # type: ignore[method-assign]
            "t": TopicConfig(num_partitions=1, replication_factor=1, extra_config={}),
            "u": None,
        }
        tolerate_missing_topic_configs()
        tolerate_missing_topic_configs()  # idempotent
        configs = TopicAdmin.inspect_topics(object.__new__(TopicAdmin), ["t", "u"])
        assert configs["t"].extra_config == {"retention.ms": "-1", "retention.bytes": "-1"}
        assert configs["u"] is None
    finally:
        TopicAdmin.inspect_topics = original  # type: ignore[method-assign]


def test_self_time_by_package() -> None:
    lines = [
        "main (app/cli/__init__.py:1);run (asyncio/base_events.py:2);send (aiokafka/producer.py:3) 5\n",
        "main (app/cli/__init__.py:1);apply (app/ingest/activity.py:55) 3\n",
        "select (selectors.py:468) 2\n",
    ]
    assert self_time_by_package(lines) == [
        ("aiokafka", 50.0),
        ("persona code (app/, agents/, tables/)", 30.0),
        ("asyncio event loop", 20.0),
    ]
    assert package_of("debug (logging/__init__.py:1477)") == "logging"


def test_results_json_is_strict() -> None:
    import json

    document = {"scenarios": {"x": {"latency": {"p99_ms": math.nan, "buckets": [(math.inf, 3.0)]}}}}
    text = json.dumps(json_safe(document), allow_nan=False)
    assert json.loads(text) == {"scenarios": {"x": {"latency": {"p99_ms": None, "buckets": [[None, 3.0]]}}}}
