"""Quality checks: robust z-scores, monetary and rate outliers, bot-like rates; flags only, nothing dropped."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.profiles import unified as profile
from app.profiles.quality import QualityConfig, QualityMonitor, RobustZ
from app.sessions.state import ev


@given(st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=80), st.integers(3, 40))
def test_median_and_mad_equal_an_independent_computation_over_the_window(xs: list[float], window: int) -> None:
    z = RobustZ(QualityConfig(window=window, refresh_every=1, min_observations=3))
    for x in xs:
        z.observe(x)
    kept = xs[-window:]
    med = statistics.median(kept)
    mad = statistics.median(abs(v - med) for v in kept)
    if mad == 0:
        mad = statistics.fmean(abs(v - med) for v in kept) * 1.2533
    assert z.median == pytest.approx(med) and z.mad == pytest.approx(mad, abs=1e-9)


def test_no_flag_while_warming_up_then_a_far_value_is_flagged() -> None:
    m = QualityMonitor(QualityConfig(min_observations=50))
    rnd = random.Random(1)
    flags = [m.revenue_outlier(rnd.lognormvariate(3.5, 0.6)) for _ in range(49)]
    assert not any(flags)
    assert m.revenue_outlier(1e6) is False  # 49 observations: still warming up
    normal = [m.revenue_outlier(rnd.lognormvariate(3.5, 0.6)) for _ in range(500)]
    assert sum(normal) <= 5  # a log-normal population is hardly ever flagged on the log scale
    assert m.revenue_outlier(250_000.0) is True
    assert m.counts["monetary_outlier"] == sum(normal) + 1


def test_monetary_outlier_is_flagged_in_the_profile_and_nothing_is_dropped() -> None:
    m = QualityMonitor(QualityConfig(min_observations=20, refresh_every=1))
    for i in range(40):
        m.revenue_outlier(30.0 + i % 7)
    state, outcome = profile.apply(None, ev("o", 0.0, "purchase", order_id="o", revenue=90_000.0, currency="GBP",
                                            items=[{"product_id": "p", "category": "x", "price": 90_000.0,
                                                    "quantity": 1}]), 0, monitor=m)
    assert outcome == "applied"
    assert state["quality"]["monetary_outliers"] == 1 and m.counts["monetary_outlier"] == 1
    assert state["orders"] == 1 and state["revenue_cents"] == 9_000_000


def test_bot_like_rate_marks_the_profile_once_per_minute_and_counts_it() -> None:
    m = QualityMonitor()
    state = None
    for i in range(150):  # 2.5 events a second for a minute, then again the next minute
        state, _ = profile.apply(state, ev(f"e{i}", 60.0 + i * 0.79), i, monitor=m)
    assert state is not None
    assert state["quality"]["bot"] is True and state["quality"]["bot_minutes"] == 2
    assert m.counts["bot_minute"] == 2 and m.counts["bot_profile"] == 1
    assert state["events"] == 150


def test_bot_marking_works_without_a_monitor() -> None:
    state = None
    for i in range(60):
        state, _ = profile.apply(state, ev(f"e{i}", i * 0.5), i)
    assert state is not None and state["quality"]["bot"] is True


def test_a_burst_minute_against_a_calm_population_is_a_rate_outlier() -> None:
    m = QualityMonitor(QualityConfig(min_observations=30, refresh_every=1))
    rnd = random.Random(2)
    for _ in range(200):
        m.rate_outlier(rnd.randint(1, 4))
    assert m.counts["rate_outlier"] == 0
    assert m.rate_outlier(8) is False  # below min_rate_per_minute: never flagged
    state = None
    for i in range(30):  # 30 events in minute 0 ...
        state, _ = profile.apply(state, ev(f"e{i}", i * 1.5), i, monitor=m)
    state, _ = profile.apply(state, ev("next", 65.0), 30, monitor=m)  # ... scored when minute 1 starts
    assert state is not None
    assert state["quality"]["rate_outliers"] == 1 and m.counts["rate_outlier"] == 1
    assert state["quality"]["bot"] is False


def test_simulated_humans_are_not_marked_as_bots_and_flags_are_reproducible() -> None:
    from tests.unit.test_profile import simulated

    items = simulated(seed=5, customers=150, events=6000)

    def flags() -> tuple[dict[str, int], int]:
        m = QualityMonitor()
        states: dict = {}  # type: ignore[type-arg]
        for offset, (customer, _, event) in enumerate(items):
            states[customer], _ = profile.apply(states.get(customer), event, offset, monitor=m)
        return m.counts, sum(s["quality"]["bot"] for s in states.values())

    counts, bots = flags()
    assert bots == 0 and counts["bot_minute"] == 0
    purchases = sum(e.type == "purchase" for _, _, e in items)
    assert counts["monetary_outlier"] <= max(1, purchases // 20)
    assert flags() == (counts, bots)


def test_snapshot_round_trip_keeps_the_statistics() -> None:
    z = RobustZ(QualityConfig(window=16, min_observations=3))
    for x in range(40):
        z.observe(float(x % 9))
    back = RobustZ.from_dict(z.to_dict(), z.config)
    assert (back.median, back.mad, back.n) == (z.median, z.mad, z.n)
    assert back.score(30.0) == z.score(30.0)
