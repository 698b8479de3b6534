"""Sessions: boundaries, lateness, timer closing, summaries, replay exactness and identity hooks."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, FormatChecker

from app.sessions import state as sessions
from app.sessions.state import SessionConfig, close_expired, ev, summary
from bench.sessions_accuracy import measure
from tables.hooks import REGISTRY, apply_change, apply_erasure

CFG = SessionConfig(gap=1800, max_length=4 * 3600, lateness=300)
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "session-summaries.v1.json").read_text())
VALIDATOR = Draft7Validator(SCHEMA, format_checker=FormatChecker())


def feed(times: list[float], cfg: SessionConfig = CFG, state: dict | None = None, start_offset: int = 0,  # type: ignore[type-arg]
         ids: list[str] | None = None) -> tuple[dict, list[dict], list[str]]:  # type: ignore[type-arg]
    """Apply page views at ``times`` in the given order; return state, closed sessions, outcomes."""
    closed: list[dict] = []  # type: ignore[type-arg]
    outcomes: list[str] = []
    for i, t in enumerate(times):
        eid = ids[i] if ids else f"e{i}"
        state, outcome, out = sessions.apply(state, ev(eid, t), start_offset + i, cfg)
        closed.extend(out)
        outcomes.append(outcome)
    assert state is not None
    return state, closed, outcomes


def flush(state: dict, closed: list[dict], cfg: SessionConfig = CFG) -> list[tuple[float, float, int]]:  # type: ignore[type-arg]
    _, rest = close_expired(state, math.inf, cfg)
    return sorted((s["start"], s["end"], s["events"]) for s in [*closed, *rest])


def reference(times: list[float], gap: float) -> list[tuple[float, float, int]]:
    """Batch sessionization, written independently: sort, cut where the gap exceeds ``gap``."""
    out: list[tuple[float, float, int]] = []
    for t in sorted(times):
        if out and t - out[-1][1] <= gap:
            start, _, n = out[-1]
            out[-1] = (start, t, n + 1)
        else:
            out.append((t, t, 1))
    return out


# Event times as increments: mostly within a session (some right at the gap), sometimes a long
# break. These tests use a maximum length no session reaches, so only the gap rule cuts.
increments = st.lists(
    st.one_of(st.floats(0, 600), st.floats(1700, 1800), st.floats(1800.001, 20000)), min_size=1, max_size=40
)
LONG = SessionConfig(gap=1800, max_length=1e9, lateness=300)


def _times(xs: list[float]) -> list[float]:
    t, out = 1_000_000.0, []
    for x in xs:
        t += x
        out.append(round(t, 3))
    return out


@given(increments)
def test_in_order_boundaries_equal_the_batch_reference(xs: list[float]) -> None:
    times = _times(xs)
    state, closed, outcomes = feed(times, LONG)
    assert flush(state, closed, LONG) == reference(times, LONG.gap)
    assert set(outcomes) == {"applied"}


@given(increments, st.randoms(use_true_random=False))
def test_boundaries_are_invariant_to_reordering_within_lateness(xs: list[float], rnd: random.Random) -> None:
    times = _times(xs)
    # Arrival order: sort by t + delay with delay <= lateness, so every event arrives at most
    # `lateness` behind the newest event seen before it.
    arrival = sorted(times, key=lambda t: t + rnd.uniform(0, LONG.lateness))
    state, closed, outcomes = feed(arrival, LONG)
    assert "late" not in outcomes
    assert flush(state, closed, LONG) == reference(times, LONG.gap)


@given(increments, st.integers(0, 40))
def test_replaying_any_suffix_of_the_input_changes_nothing(xs: list[float], cut: int) -> None:
    times = _times(xs)
    once, _, _ = feed(times)
    again, closed_again, outcomes = feed(times[cut:], state=once, start_offset=min(cut, len(times)))
    assert again == once
    assert closed_again == [] and set(outcomes) <= {"replayed"}


@settings(max_examples=50)
@given(st.lists(st.floats(0, 50000), min_size=1, max_size=60))
def test_every_event_is_in_exactly_one_emitted_session_or_counted_late(raw: list[float]) -> None:
    """Arbitrary disorder: nothing is lost, nothing counted twice, nothing emitted twice."""
    state, closed, outcomes = feed(raw)
    final, rest = close_expired(state, math.inf, CFG)
    emitted = [*closed, *rest]
    assert sum(s["events"] for s in emitted) + final["late"] == len(raw)
    assert outcomes.count("late") == final["late"]
    assert len({s["id"] for s in emitted}) == len(emitted)
    spans = sorted((s["start"], s["end"]) for s in emitted)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), "emitted sessions overlap"


def test_event_beyond_lateness_is_counted_late_and_the_closed_session_is_not_reopened() -> None:
    state, closed, _ = feed([0.0, 600.0, 600.0 + 1800 + 300 + 1])  # third event closes the first session
    assert [(s["start"], s["end"], s["events"]) for s in closed] == [(0.0, 600.0, 2)]
    state, outcome, out = sessions.apply(state, ev("late", 300.0), 10, CFG)
    assert (outcome, out, state["late"]) == ("late", [], 1)
    # An event after the closed session's end but within its gap would have extended it: late too.
    state, outcome, _ = sessions.apply(state, ev("late2", 600.0 + 1700), 11, CFG)
    assert outcome == "late" and state["late"] == 2
    assert [s["events"] for s in state["open"]] == [1]


def test_late_event_within_lateness_bridges_two_open_sessions() -> None:
    # 0 and 2000 are 2000 s apart (> gap); the later arrival at 1000 links them.
    state, closed, _ = feed([0.0, 2000.0])
    assert len(state["open"]) == 2 and closed == []
    state, outcome, _ = sessions.apply(state, ev("bridge", 1000.0), 5, CFG)
    assert outcome == "applied"
    assert [(s["start"], s["end"], s["events"], s["id"]) for s in state["open"]] == [(0.0, 2000.0, 3, "ses-e0")]


def test_sessions_are_cut_at_max_length() -> None:
    times = [i * 300.0 for i in range(121)]  # every 5 min for 10 h
    state, closed, _ = feed(times)
    _, rest = close_expired(state, math.inf, CFG)
    emitted = sorted([*closed, *rest], key=lambda s: s["start"])
    assert [(s["start"], s["end"]) for s in emitted] == [(0.0, 14100.0), (14400.0, 28500.0), (28800.0, 36000.0)]
    assert [s["close_reason"] for s in emitted] == ["max_length", "max_length", "inactivity"]
    assert all(s["end"] - s["start"] < CFG.max_length for s in emitted)


def test_timer_closes_a_session_only_after_gap_plus_lateness() -> None:
    state, _, _ = feed([100.0, 200.0])
    same, closed = close_expired(state, 200.0 + 1800 + 300, CFG)
    assert same is state and closed == []
    after, closed = close_expired(state, 200.0 + 1800 + 300.001, CFG)
    assert [c["close_reason"] for c in closed] == ["inactivity"] and after["open"] == []
    assert after["closed"] == 1 and after["closed_bound"] == 2000.0
    # the customer comes back: a new session, the old one not emitted again
    back, outcome, again = sessions.apply(after, ev("x", 9000.0), 99, CFG)
    assert outcome == "applied" and again == [] and len(back["open"]) == 1


def test_publisher_retry_counts_once() -> None:
    state, _, outcomes = feed([0.0, 10.0, 20.0], ids=["a", "b", "a"])
    assert outcomes == ["applied", "applied", "duplicate_event_id"]
    assert state["open"][0]["events"] == 2 and state["offset"] == 2


def test_summary_matches_the_schema_and_describes_the_session() -> None:
    cfg = CFG
    evs = [
        ev("e2", 1060.0, "product_view", page_url="https://s/p/1", product_id="p1", category="toys", price=3.0),
        ev("e1", 1000.0, "page_view",  # arrives second but is the earliest: the landing hit
           page_url="https://s/c/toys?utm_source=news&utm_medium=email&utm_campaign=c1"),
        ev("e3", 1100.0, "add_to_cart", product_id="p1", category="toys", price=3.0, quantity=2),
        ev("e4", 1150.0, "remove_from_cart", product_id="p1", category="toys", price=3.0, quantity=1),
        ev("e5", 1200.0, "checkout_start"),
        ev("e6", 1300.0, "purchase", order_id="o", revenue=3.1, currency="GBP",
           items=[{"product_id": "p1", "category": "toys", "price": 3.1, "quantity": 1}]),
    ]
    evs[1].data["context"].update(referrer="https://mail/", device={"type": "mobile"})
    state = None
    for i, e in enumerate(evs):
        state, _, _ = sessions.apply(state, e, i, cfg)
    assert state is not None
    _, [closed] = close_expired(state, math.inf, cfg)
    doc = summary(closed, "prof-1")
    VALIDATOR.validate(doc)
    assert doc == {
        "schema_version": 1, "session_id": "ses-e2", "profile_id": "prof-1",
        "start": "1970-01-01T00:16:40.000Z", "end": "1970-01-01T00:21:40.000Z", "duration_seconds": 300.0,
        "events": 6, "pages": 1, "products_viewed": ["p1"], "categories": ["toys"], "cart_adds": 1,
        "cart_removes": 1, "checkout_reached": True, "purchased": True, "revenue": 3.1, "device_type": "mobile",
        "landing_page": "https://s/c/toys?utm_source=news&utm_medium=email&utm_campaign=c1",
        "referrer": "https://mail/", "utm": {"source": "news", "medium": "email", "campaign": "c1"},
        "close_reason": "inactivity",
    }


def test_products_and_categories_are_bounded() -> None:
    cfg = SessionConfig(max_products=3, max_categories=2)
    state = None
    for i in range(10):
        state, _, _ = sessions.apply(state, ev(f"e{i}", float(i), "product_view", product_id=f"p{i}",
                                              category=f"c{i}", price=1.0), i, cfg)
    assert state is not None
    assert state["open"][0]["products"] == ["p0", "p1", "p2"] and state["open"][0]["categories"] == ["c0", "c1"]
    assert state["open"][0]["events"] == 10


# ---------------------------------------------------------------- simulator ground truth


def test_sessions_found_agree_with_the_simulators_true_sessions() -> None:
    result = measure(seed=11, customers=150, events=5000)
    assert result.true_sessions > 200 and result.events > 4500
    assert result.recall >= 0.99 and result.precision >= 0.99, result


# ---------------------------------------------------------------- hooks


def _state_with(times: list[float], prefix: str) -> dict[str, Any]:
    state, closed, _ = feed(times, ids=[f"{prefix}{i}" for i in range(len(times))])
    assert closed == []
    return state


def test_merge_combines_open_sessions_that_overlap_and_keeps_the_others() -> None:
    hook = REGISTRY["sessions"]
    a = _state_with([0.0, 600.0, 2500.0], "a")  # open sessions [0, 600] and [2500]
    b = _state_with([650.0, 2600.0], "b")        # [650] and [2600]: each within gap of one of a's
    assert len(a["open"]) == 2 and len(b["open"]) == 2
    merged = hook.merge(a, b)
    # [0, 650] and [2500, 2600] are 1850 s apart (> gap): they stay two sessions.
    assert [(s["start"], s["end"], s["events"], s["id"]) for s in merged["open"]] == [
        (0.0, 650.0, 3, "ses-a0"), (2500.0, 2600.0, 2, "ses-a2")]
    c = _state_with([5000.0], "c")
    assert [s["id"] for s in hook.merge(merged, c)["open"]] == ["ses-a0", "ses-a2", "ses-c0"]
    assert merged["offset"] == a["offset"] and merged["watermark"] == 2600.0


session_sets = st.lists(st.tuples(st.floats(0, 40000), st.floats(0, 1500)), min_size=1, max_size=6)


def _from_spans(spans: list[tuple[float, float]], prefix: str) -> dict[str, Any]:
    state = sessions.new_state()
    opened = []
    for i, (start, length) in enumerate(spans):
        s = sessions._fold(sessions._new_session(ev(f"{prefix}{i}", start)), ev(f"{prefix}{i}", start), CFG)
        s = sessions._fold(s, ev(f"{prefix}{i}x", start + length), CFG)
        opened.append(s)
    state["open"] = sessions.coalesce(opened, CFG)
    return state


@given(session_sets, session_sets, session_sets)
def test_merge_hook_is_associative_on_open_sessions(a: list, b: list, c: list) -> None:  # type: ignore[type-arg]
    hook = REGISTRY["sessions"]
    x, y, z = _from_spans(a, "a"), _from_spans(b, "b"), _from_spans(c, "c")
    assert hook.merge(hook.merge(x, y), z) == hook.merge(x, hook.merge(y, z))


def test_merge_split_and_erase_through_the_table_contract() -> None:
    hook = REGISTRY["sessions"]
    table = {"p-1": _state_with([0.0], "a"), "p-2": _state_with([100.0], "b")}
    apply_change(table, hook, {"change": "merged", "profile_id": "p-1", "absorbed_profile_ids": ["p-2"]})
    assert list(table) == ["p-1"] and table["p-1"]["open"][0]["events"] == 2
    apply_change(table, hook, {"change": "split", "profile_id": "p-1", "new_profile_ids": ["p-1", "p-3"]})
    assert list(table) == ["p-1"]
    apply_erasure(table, hook, "p-1")
    assert table == {}


def test_simulated_sessions_survive_arrival_delays_within_lateness() -> None:
    result = measure(seed=11, customers=150, events=5000, delay=CFG.lateness)
    assert result.late == 0
    assert result.recall >= 0.99 and result.precision >= 0.99, result


def test_arrival_delays_far_beyond_lateness_are_counted_late_not_lost() -> None:
    result = measure(seed=11, customers=150, events=5000, delay=4 * 3600)
    assert result.late > 0  # events that would reopen emitted sessions
    assert result.recall < 1.0


def test_after_a_max_length_cut_a_late_event_past_the_cut_session_joins_its_successor() -> None:
    times = [i * 300.0 for i in range(60)]  # 0 .. 17700, cut at 14400; the first part closes at 14700
    state, closed, _ = feed(times)
    assert [(s["start"], s["end"], s["close_reason"]) for s in closed] == [(0.0, 14100.0, "max_length")]
    assert state["closed_bound"] == 14100.0  # the cut session's end, not end + gap
    assert [(s["start"], s["end"]) for s in state["open"]] == [(14400.0, 17700.0)]
    # 14250 is after the cut session's end: not late; it joins the session that followed.
    state, outcome, _ = sessions.apply(state, ev("between", 14250.0), 100, CFG)
    assert outcome == "applied" and state["late"] == 0
    assert [(s["start"], s["end"], s["events"]) for s in state["open"]] == [(14250.0, 17700.0, 13)]
    state, outcome, _ = sessions.apply(state, ev("inside", 14000.0), 101, CFG)
    assert outcome == "late" and state["late"] == 1


def test_serving_view_shows_the_current_session() -> None:
    state, _, _ = feed([0.0, 60.0, 2000.0])  # 1940 s apart: two sessions, the first not yet closed
    view = sessions.serving(state)
    assert view["open_sessions"] == 2 and view["closed_sessions"] == 0 and view["late_events"] == 0
    assert view["current"] == {"session_id": "ses-e2", "start": 2000.0, "end": 2000.0, "events": 1,
                               "cart_adds": 0, "purchased": False}
