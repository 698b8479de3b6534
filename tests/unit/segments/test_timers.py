"""Timers: a profile is woken exactly when a rule's outcome can change, not for every bucket."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.segments import evaluate as ev
from app.segments import windows
from app.segments.rules import load_rules
from tests.unit.segments.conftest import HOUR, T0, Script, summary

RULE = load_rules('[rules.busy]\nwhen = "count(product_view, 24h) > 3"\nexit_margin = 1\n')


def test_a_member_is_woken_when_its_count_falls_to_the_exit_threshold_not_at_each_bucket(default_rules):
    s = Script(default_rules)
    quiet = {"lifetime__purchases": 1, "monetary": 0.0, "first_seen": T0 - 400 * 86400,
             "last_purchase_at": T0 - 86400}
    for i in range(5):
        s.event("product_view", T0 + i * HOUR, **quiet)
    # Five views in five hourly buckets; with the exit margin the member leaves at 2 views,
    # i.e. when the third bucket (02:00-03:00) leaves the 24 h window, at 03:00 the next day.
    assert s.timer == T0 + 27 * HOUR
    exits = s.advance(T0 + 30 * HOUR)
    assert summary(exits) == [("exited", "highly_engaged")]
    assert s.evaluations == 6  # five events and one timer


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 48 * HOUR, allow_nan=False), min_size=1, max_size=25), st.booleans())
def test_nothing_changes_before_the_scheduled_time_and_a_count_rule_flips_at_it(offsets, member):
    state = None
    for i, x in enumerate(sorted(offsets)):
        state, _ = windows.apply(state, "product_view", T0 + x, i)
    now = T0 + max(offsets)
    members = {"busy": {"since": now}} if member else {}
    decided = set(ev.evaluate(RULE, {}, state, now, members))
    due = ev.next_evaluation_at(RULE, {}, state, now, members)
    held = {"busy": {"since": now}} if decided else {}
    due_after = ev.next_evaluation_at(RULE, {}, state, now, held)
    for t, _ in windows.expiries(state, "product_view", 24 * HOUR, now):
        if due_after is None or t < due_after:
            assert set(ev.evaluate(RULE, {}, state, t, held)) == decided
    if due_after is not None:
        assert set(ev.evaluate(RULE, {}, state, due_after, held)) != decided
    if due is not None:
        assert due > now
