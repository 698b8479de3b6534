"""Pure helpers of the throughput benchmark: percentiles, ratios, histogram quantiles,
profile summaries and the shape of the results document.

Nothing here touches a broker or a process, so it is unit-tested (tests/unit/test_bench_stats.py).

Examples
--------
>>> percentile([1.0, 2.0, 3.0, 4.0], 50)
2.5
>>> ratio(30.0, 60.0)
0.5
>>> ratio(1.0, 0.0) is None
True
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SCENARIOS = ("faust_passthrough", "quix_count", "pipeline_1w", "pipeline_2w")
BASELINE = "quix_count"
SCENARIO_FIELDS = (
    "name",
    "description",
    "events",
    "events_per_s",
    "drain_seconds",
    "cpu_seconds_per_1000",
    "peak_rss_mb",
    "latency",
    "ratio_to_quix",
    "processes",
)
LATENCY_FIELDS = ("method", "rate", "seconds", "events", "p50_ms", "p99_ms", "max_ms")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks (numpy's default).

    >>> percentile([5.0], 99)
    5.0
    >>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99)
    4.96
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 12)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """Count, p50, p99 and max of latencies given in seconds, in milliseconds."""
    if not seconds:
        return {"events": 0, "p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    return {
        "events": len(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000,
    }


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile (0-1) of a Prometheus cumulative histogram, as ``histogram_quantile`` computes it.

    ``buckets`` are ``(upper_bound, cumulative_count)`` pairs, ending with ``+Inf``. Inside a
    bucket the value is interpolated linearly from the bucket's lower bound (0 for the first);
    a quantile in the ``+Inf`` bucket returns the highest finite bound (a lower bound of the truth).

    >>> histogram_quantile([(0.01, 50.0), (0.1, 100.0), (math.inf, 100.0)], 0.5)
    0.01
    >>> round(histogram_quantile([(0.01, 50.0), (0.1, 100.0), (math.inf, 100.0)], 0.75), 4)
    0.055
    """
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        raise ValueError("a histogram needs a +Inf bucket")
    total = ordered[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def histogram_delta(before: Mapping[float, float], after: Mapping[float, float]) -> list[tuple[float, float]]:
    """Cumulative bucket counts observed between two scrapes (``after - before``), sorted by bound."""
    return sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or ``None`` when either is missing or the baseline is not positive."""
    if value is None or baseline is None or baseline <= 0 or math.isnan(value) or math.isnan(baseline):
        return None
    return value / baseline


def events_per_second(events: int, first: float, last: float) -> float:
    """Sustained rate from the first to the last processed record.

    >>> events_per_second(1001, 10.0, 12.0)
    500.0
    """
    if last <= first:
        raise ValueError("the last record must come after the first")
    # n records span n - 1 inter-record gaps.
    return (events - 1) / (last - first)


def cpu_per_1000(cpu_seconds: float, events: int) -> float:
    """CPU seconds per 1,000 events.

    >>> cpu_per_1000(2.5, 10_000)
    0.25
    """
    return cpu_seconds * 1000 / events if events else math.nan


def core_bound_scaling(one_worker: Mapping[str, Any], cores: int) -> float | None:
    """The most several workers can gain over one when all processes share ``cores`` cores.

    Every event costs the worker's CPU plus the broker's and Redis's
    (``stack_cpu_seconds_per_1000``); ``cores`` busy cores process at most
    ``cores * 1000 / (worker + stack)`` events/s, whatever the number of workers.

    >>> core_bound_scaling({"events_per_s": 1000.0, "cpu_seconds_per_1000": 0.8,
    ...                     "stack_cpu_seconds_per_1000": 0.2}, cores=2)
    2.0
    >>> core_bound_scaling({"events_per_s": 1000.0, "cpu_seconds_per_1000": 0.8}, cores=2) is None
    True
    """
    rate = one_worker.get("events_per_s")
    worker, stack = one_worker.get("cpu_seconds_per_1000"), one_worker.get("stack_cpu_seconds_per_1000")
    if not rate or worker is None or stack is None or worker + stack <= 0:
        return None
    return float(cores * 1000 / (worker + stack) / rate)


def add_ratios(scenarios: dict[str, dict[str, Any]], cores: int | None = None) -> dict[str, float | None]:
    """Fill each scenario's ``ratio_to_quix`` and return the run's headline ratios."""
    base = scenarios.get(BASELINE, {}).get("events_per_s")
    for result in scenarios.values():
        result["ratio_to_quix"] = ratio(result.get("events_per_s"), base)
    one = scenarios.get("pipeline_1w", {}).get("events_per_s")
    two = scenarios.get("pipeline_2w", {}).get("events_per_s")
    return {
        "pipeline_1w_to_quix": ratio(one, base),
        "pipeline_2w_to_1w": ratio(two, one),
        "faust_passthrough_to_quix": ratio(scenarios.get("faust_passthrough", {}).get("events_per_s"), base),
        # What pipeline_2w_to_1w could be at most on this machine (see core_bound_scaling), and
        # the share of that bound 2 workers reach at their own CPU cost per event.
        "pipeline_2w_to_1w_core_bound": (
            core_bound_scaling(scenarios["pipeline_1w"], cores) if cores and "pipeline_1w" in scenarios else None
        ),
        "pipeline_2w_machine_share": (
            ratio(1.0, core_bound_scaling(scenarios["pipeline_2w"], cores))
            if cores and "pipeline_2w" in scenarios else None
        ),
    }


def check_results(document: Mapping[str, Any]) -> list[str]:
    """Problems with a results document's shape (empty when it is well formed)."""
    problems = []
    for key in ("started_at", "command", "machine", "input", "scenarios", "ratios", "targets"):
        if key not in document:
            problems.append(f"missing {key!r}")
    for name, result in document.get("scenarios", {}).items():
        if name not in SCENARIOS:
            problems.append(f"unknown scenario {name!r}")
        for key in SCENARIO_FIELDS:
            if key not in result:
                problems.append(f"{name}: missing {key!r}")
        for key in LATENCY_FIELDS:
            if key not in result.get("latency", {}):
                problems.append(f"{name}: latency missing {key!r}")
    return problems


def targets(scenarios: Mapping[str, Mapping[str, Any]], ratios: Mapping[str, float | None]) -> dict[str, Any]:
    """The issue's targets, each with the measured value and whether it is met."""

    def met(value: float | None, ok: bool) -> bool | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else ok

    one_to_quix = ratios.get("pipeline_1w_to_quix")
    two_to_one = ratios.get("pipeline_2w_to_1w")
    p99s = {
        name: scenarios[name]["latency"].get("p99_ms") for name in ("pipeline_1w", "pipeline_2w") if name in scenarios
    }
    return {
        "pipeline_1w >= 1.0x quix": {
            "value": one_to_quix,
            "met": met(one_to_quix, one_to_quix is not None and one_to_quix >= 1.0),
        },
        "pipeline_2w >= 1.7x pipeline_1w": {
            "value": two_to_one,
            "met": met(two_to_one, two_to_one is not None and two_to_one >= 1.7),
        },
        **{
            f"{name} p99 <= 50 ms at half max rate": {
                "value": p99,
                "met": met(p99, p99 is not None and p99 <= 50.0),
            }
            for name, p99 in p99s.items()
        },
    }


def profile_summary(collapsed: Iterable[str], top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares of frames from py-spy's ``--format raw`` (collapsed stacks).

    Each line is ``frame;frame;...;leaf COUNT``. Returns the ``top`` frames by self time and
    by inclusive time, as (frame, percent of all samples).

    >>> s = profile_summary(["a;b 3", "a;c 1"], top=2)
    >>> s["self"]
    [('b', 75.0), ('c', 25.0)]
    >>> s["inclusive"][0]
    ('a', 100.0)
    """
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    total = 0
    for line in collapsed:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return {"self": [], "inclusive": []}

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [(frame, round(100 * n / total, 2)) for frame, n in best]

    return {"self": ranked(own), "inclusive": ranked(inclusive)}


PACKAGE_GROUPS = (
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("faust/", "faust"),
    ("mode/", "mode (faust's service library)"),
    ("aiokafka/", "aiokafka"),
    ("prometheus_client/", "prometheus_client (metrics)"),
    ("logging/", "logging"),
    ("redis/", "redis client"),
    ("app/", "persona code (app/, agents/, tables/)"),
    ("agents/", "persona code (app/, agents/, tables/)"),
    ("tables/", "persona code (app/, agents/, tables/)"),
)


def package_of(frame: str) -> str:
    """The component a py-spy frame ``function (path/file.py:line)`` belongs to.

    >>> package_of("Topic.publish_message (faust/topics.py:411)")
    'faust'
    >>> package_of("apply (app/ingest/activity.py:55)")
    'persona code (app/, agents/, tables/)'
    >>> package_of("<native>")
    'other'
    """
    _, _, location = frame.rpartition("(")
    for prefix, group in PACKAGE_GROUPS:
        if location.startswith(prefix):
            return group
    return "other"


def self_time_by_package(collapsed: Iterable[str]) -> list[tuple[str, float]]:
    """Share of samples (percent) whose innermost frame is in each component, largest first.

    >>> self_time_by_package(["x (faust/a.py:1);y (aiokafka/b.py:2) 3", "z (faust/c.py:3) 1"])
    [('aiokafka', 75.0), ('faust', 25.0)]
    """
    counts: dict[str, int] = defaultdict(int)
    total = 0
    for line in collapsed:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        counts[package_of(stack.split(";")[-1].strip())] += count
    if not total:
        return []
    return sorted(((g, round(100 * n / total, 2)) for g, n in counts.items()), key=lambda item: (-item[1], item[0]))


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (strict JSON has neither).

    >>> json_safe({"a": [1.0, float("nan")], "b": (float("inf"), "x")})
    {'a': [1.0, None], 'b': [None, 'x']}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
