"""Soak: ``RELIABILITY_SOAK_SECONDS`` (default 600) of simulator traffic at half the maximum rate.

The maximum is measured first in the same run: ``RELIABILITY_SOAK_DRAIN_RECORDS`` (default
20,000) simulator records sent as fast as the simulator goes, and the worker's records per
second while it drains them (``RELIABILITY_SOAK_RATE`` overrides it). Then the soak: worker RSS
sampled every 5 s, flat within ±10 % after the warm-up (the first fifth, at least 60 s: the
mean of the last minute against the mean of the first minute after it); end-to-end p50/p99
from ``persona_end_to_end_seconds`` over the time after the warm-up (bucket bounds: the
quantile lies at or below the figure).

The simulator stops when its customers are used up (about 100 records each), so the soak's
customers (``RELIABILITY_SOAK_CUSTOMERS``; 0, the default: enough for the soak's rate and
length) keep arriving all along and the tables grow with them: the table keys
(``persona_table_keys``) at the warm-up's end and at the end are reported beside RSS, to tell
state from a leak. (A fixed 1,000 customers ran dry after 105 s at 974 records/s.)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.embedded.stack import EmbeddedStack, ManagedProcess
from tests.integration.conftest import Pipeline
from tests.reliability.report import LogWatch, rss_kib, size, stage_of, write_results

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(7200)]

RECORD_COUNTERS = ("persona_events_processed_total", "persona_dead_letters_total", "persona_duplicates_total")


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile ``q`` (``buckets``: cumulative ``(le, count)``).

    >>> bucket_quantile([(0.1, 50), (0.5, 98), (1.0, 100), (float("inf"), 100)], 0.99)
    1.0
    >>> bucket_quantile([(0.1, 0), (float("inf"), 0)], 0.5) is None
    True
    """
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    return next(le for le, count in buckets if count >= q * total)


def histogram(pipeline: Pipeline, port: int, name: str) -> list[tuple[float, float]]:
    samples = pipeline.samples(port, name + "_bucket")
    return sorted((float(s.labels["le"]), s.value) for s in samples if s.name == name + "_bucket")


def table_keys(pipeline: Pipeline, port: int) -> dict[str, float]:
    return {s.labels["table"]: s.value for s in pipeline.samples(port, "persona_table_keys")
            if s.name == "persona_table_keys"}


def records_done(pipeline: Pipeline, port: int) -> float:
    return sum(pipeline.metric(port, name) for name in RECORD_COUNTERS)


def simulate(pipeline: Pipeline, run_dir: Path, name: str, *args: str) -> ManagedProcess:
    topics = pipeline.topics
    argv = [sys.executable, "-m", "app.cli", "simulate", "--bootstrap", pipeline.stack.bootstrap,
            "--clickstream-topic", topics.clickstream, "--crm-topic", topics.crm_profiles, *args]
    return ManagedProcess.start(name, argv, run_dir, pipeline.env)


def sim_sent(sim: ManagedProcess) -> str:
    """The simulator's own closing summary (its last log line), to compare with what the worker applied."""
    return sim.tail(1)


def drain_rate(pipeline: Pipeline, port: int, records: int) -> float:
    """Records per second the worker applies while draining ``records`` sent as fast as the simulator goes."""
    sim = simulate(pipeline, pipeline.run_dir, "drain", "--seed", "7", "--customers", "2000", "--days", "3",
                   "--events", str(records), "--rate", "0")
    first: tuple[float, float] | None = None
    last = (time.monotonic(), records_done(pipeline, port))
    while time.monotonic() - last[0] < 5 or sim.running:
        time.sleep(0.5)
        done = records_done(pipeline, port)
        if done != last[1]:
            last = (time.monotonic(), done)
            first = first or last
    sim.stop()
    assert first is not None and last[1] > first[1], "the worker applied nothing"
    return (last[1] - first[1]) / max(1e-3, last[0] - first[0])


def test_half_the_maximum_rate_for_ten_minutes_keeps_rss_flat(stack: EmbeddedStack, tmp_path: Path) -> None:
    seconds = size("SOAK_SECONDS", 600)
    pipeline = Pipeline(stack, tmp_path)
    try:
        worker, port = pipeline.start_worker()
        watch = LogWatch(worker)
        measured = drain_rate(pipeline, port, size("SOAK_DRAIN_RECORDS", 20_000))
        rate = size("SOAK_RATE", 0) or int(measured / 2)
        warmup = max(60.0, seconds / 5)
        customers = size("SOAK_CUSTOMERS", 0) or max(1000, -(-rate * seconds // 80))
        sim = simulate(pipeline, tmp_path, "soak", "--seed", "8", "--customers", str(customers),
                       "--days", "14", "--rate", str(rate), "--duration", str(seconds))
        began, rss, e2e_at_warmup, done_at_warmup = time.monotonic(), [], None, 0.0
        keys_at_warmup: dict[str, float] = {}
        while time.monotonic() - began < seconds and sim.running and worker.running:
            time.sleep(5)
            rss.append((round(time.monotonic() - began, 1), rss_kib(worker.proc.pid)))
            if e2e_at_warmup is None and time.monotonic() - began >= warmup:
                e2e_at_warmup, done_at_warmup = histogram(pipeline, port, "persona_end_to_end_seconds"), \
                    records_done(pipeline, port)
                keys_at_warmup = table_keys(pipeline, port)
        elapsed = time.monotonic() - began
        e2e_end, done_end = histogram(pipeline, port, "persona_end_to_end_seconds"), records_done(pipeline, port)
        keys_end = table_keys(pipeline, port)
        sim.stop()
        after = [(le, n - dict(e2e_at_warmup or []).get(le, 0)) for le, n in e2e_end]
        steady = [kib for t, kib in rss if t >= warmup]
        first_min = [kib for t, kib in rss if warmup <= t < warmup + 60]
        last_min = [kib for t, kib in rss if t >= elapsed - 60]
        growth = statistics.mean(last_min) / statistics.mean(first_min) - 1 if first_min and last_min else None
        problems = watch.problems()
        figures: dict[str, Any] = {
            "seconds": round(elapsed), "warmup_seconds": warmup, "drain_records_per_s": round(measured),
            "rate_records_per_s": rate, "rate_source": "RELIABILITY_SOAK_RATE" if size("SOAK_RATE", 0) else "half the "
            "drain rate measured in this run",
            "records_applied_per_s_after_warmup": round((done_end - done_at_warmup) / max(1.0, elapsed - warmup), 1),
            "simulator_records_sent": sim_sent(sim),
            "rss_kib_first_minute_after_warmup": round(statistics.mean(first_min)) if first_min else None,
            "rss_kib_last_minute": round(statistics.mean(last_min)) if last_min else None,
            "rss_growth": None if growth is None else round(growth, 4),
            "rss_kib_min_max_after_warmup": [min(steady), max(steady)] if steady else None,
            "end_to_end_p50_s": bucket_quantile(after, 0.5), "end_to_end_p99_s": bucket_quantile(after, 0.99),
            "end_to_end_events_after_warmup": after[-1][1] if after else 0,
            "table_keys_at_warmup_end": keys_at_warmup, "table_keys_at_end": keys_end,
            "rss_samples": rss, "worker_alive": worker.running, "logged_tracebacks": len(problems),
            "traceback_stages": sorted({stage_of(p) for p in problems}),
        }
    finally:
        pipeline.stop()
    write_results("soak", figures)
    assert figures["worker_alive"] and figures["logged_tracebacks"] == 0
    assert growth is not None, f"the soak ended after {figures['seconds']} s: no minute after the warm-up to compare"
    assert abs(growth) <= 0.10, f"RSS moved {growth:+.1%} after the warm-up"
