"""The throughput bench's reading of a worker's metrics: a drain ends only when every event is applied."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.simulator import SimConfig, iter_records, read_jsonl, write_jsonl
from app.simulator.batches import batch_records
from bench.throughput import BenchConfig, input_records, pipeline_done, stage_counts

END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

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


def test_the_bench_input_is_read_lazily_each_pass_or_batched_once(tmp_path: Path) -> None:
    config = SimConfig(seed=3, customers=4, end=END, max_events=300)
    records = [r for r in iter_records(config) if r.topic == "clickstream"]
    path = tmp_path / "input.jsonl"
    write_jsonl(records, path)
    unbatched = input_records(BenchConfig(), path)
    assert not isinstance(iter(unbatched), list) and list(unbatched) == list(unbatched) == list(read_jsonl(path))
    assert len(unbatched) == len(records)
    batched = input_records(BenchConfig(batch_events=5, batch_seconds=1800), path)
    assert list(batched) == list(batch_records(read_jsonl(path), 5, flush_seconds=1800))
    assert len(batched) == len(list(batched)) < len(records)
