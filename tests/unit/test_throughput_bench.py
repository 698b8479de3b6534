"""The throughput bench's reading of a worker's metrics: a drain ends only when every event is applied."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bench.throughput import pipeline_done, stage_counts

METRICS = """\
# TYPE persona_events_processed_total counter
persona_events_processed_total{topic="clickstream",event_type="page_view"} 100.0
# TYPE persona_stage_seconds histogram
persona_stage_seconds_count{stage="profiles"} 100.0
persona_stage_seconds_count{stage="identity"} 0.0
# TYPE persona_end_to_end_seconds histogram
persona_end_to_end_seconds_bucket{le="0.1"} 90.0
persona_end_to_end_seconds_bucket{le="+Inf"} 90.0
persona_end_to_end_seconds_count 90.0
"""


def test_ticks_counted_by_the_profiles_stage_do_not_end_a_drain_with_events_still_queued() -> None:
    # 100 events ingested and forwarded, 90 applied; the stage's record count (100) includes 10 ticks.
    counts, buckets = stage_counts(text_string_to_metric_families(METRICS))
    assert counts["profiles"] == 90.0 and buckets == {0.1: 90.0, float("inf"): 90.0}
    assert pipeline_done([counts]) == 90.0


def test_a_tree_without_the_end_to_end_histogram_is_counted_by_its_stage_records() -> None:
    older = "\n".join(line for line in METRICS.splitlines() if "end_to_end" not in line)
    counts, _ = stage_counts(text_string_to_metric_families(older))
    assert counts["profiles"] == 100.0
