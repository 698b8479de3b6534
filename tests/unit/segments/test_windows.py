"""Windowed counts: exact under replay, equal to a recomputation from the raw events, bounded, mergeable."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.segments import windows
from tests.unit.segments.conftest import DAY, HOUR, T0

TYPES = ["product_view", "search", "purchase"]
WINDOWS = [HOUR, 3 * HOUR, 24 * HOUR, 48 * HOUR, 2 * DAY, 7 * DAY, 30 * DAY, 90 * DAY]

events = st.lists(
    st.tuples(st.sampled_from(TYPES), st.floats(0, 120 * DAY, allow_nan=False).map(lambda x: T0 + round(x, 3))),
    max_size=60,
)


def fold(evs, start_offset=0, state=None):
    for i, (t, ts) in enumerate(evs):
        state, _ = windows.apply(state, t, ts, start_offset + i)
    return state


def recount(evs, event_type, window, now):
    """Independent recomputation of the documented definition from the raw events."""
    size = windows.tier_for(window)
    assert size is not None
    n = 0
    for t, ts in evs:
        i = math.floor(ts / size)
        if t == event_type and (i + 1) * size > now - window and i * size <= now:
            n += 1
    return n


@settings(max_examples=150, deadline=None)
@given(events, st.data())
def test_replaying_any_suffix_of_the_applied_events_changes_nothing(evs, data):
    state = fold(evs)
    cut = data.draw(st.integers(0, len(evs)))
    again = state
    for i in range(cut, len(evs)):
        again, outcome = windows.apply(again, evs[i][0], evs[i][1], i)
        assert outcome == "replayed"
    assert again == state


@settings(max_examples=150, deadline=None)
@given(events, st.sampled_from(TYPES), st.sampled_from(WINDOWS), st.floats(0, 5 * DAY, allow_nan=False))
def test_counts_equal_an_independent_recomputation_from_the_raw_events(evs, event_type, window, later):
    state = fold(evs)
    newest = max((ts for _, ts in evs), default=T0)
    now = newest + later
    assert windows.count(state, event_type, window, now) == recount(evs, event_type, window, now)
    last = [ts for t, ts in evs if t == event_type]
    assert windows.age(state, event_type, now) == (now - max(last) if last else math.inf)


@settings(max_examples=100, deadline=None)
@given(events)
def test_state_stays_bounded_by_types_times_buckets_kept(evs):
    state = fold(evs)
    bound = len(TYPES) * sum(kept + 1 for _, kept in windows.DEFAULT_TIERS)
    assert windows.size(state) <= bound


def test_a_long_history_keeps_the_state_small():
    evs = [("product_view", T0 + i * 600.0) for i in range(200 * 24 * 6)]  # every 10 minutes for 200 days
    state = fold(evs)
    assert windows.size(state) == 49 + 91
    now = evs[-1][1]
    assert windows.count(state, "product_view", 24 * HOUR, now) == recount(evs, "product_view", 24 * HOUR, now)
    assert windows.count(state, "product_view", 30 * DAY, now) == recount(evs, "product_view", 30 * DAY, now)


@settings(max_examples=100, deadline=None)
@given(events, events, st.sampled_from(TYPES), st.sampled_from(WINDOWS))
def test_merge_counts_the_events_of_both_profiles(a, b, event_type, window):
    merged = windows.WindowHooks().merge(fold(a) or windows.new_state(), fold(b) or windows.new_state())
    now = max([ts for _, ts in a + b], default=T0)
    # Each side pruned against its own newest event; both keep everything a window can reach at `now`.
    assert windows.count(merged, event_type, window, now) == recount(a + b, event_type, window, now)


def test_a_window_no_tier_answers_is_refused():
    with pytest.raises(ValueError, match="no bucket tier"):
        windows.count(None, "search", 90 * 60, T0)


def test_erase_deletes_and_split_keeps_the_state_with_the_id_that_stayed():
    state = fold([("search", T0)])
    hooks = windows.WindowHooks()
    assert hooks.erase(state) is None
    assert hooks.split(state, "p-1", ["p-1", "p-2"]) == {"p-1": state}
