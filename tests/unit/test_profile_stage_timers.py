"""Timed rule changes are decided at their due time, however late a tick or an event finds them."""

from __future__ import annotations

from app.profiles import state as profile_stage
from app.sessions.state import ev

DAY = 86_400.0


def first_visit() -> dict:
    value, _ = profile_stage.apply_event(None, ev("e1", 1_000.0), offset=0, partition=0, profile_id="p-1")
    return value


def test_a_late_tick_dates_the_timed_exit_at_its_due_time() -> None:
    value = first_visit()
    due = value["next_eval_at"]
    _, soon = profile_stage.tick(value, due + 1.0, "p-1")
    _, late = profile_stage.tick(value, due + 20 * DAY, "p-1")
    assert [c["at"] for c in soon.segment_changes] == [c["at"] for c in late.segment_changes]
    assert [c["change_id"] for c in soon.segment_changes] == [c["change_id"] for c in late.segment_changes]


def test_an_event_after_the_due_time_decides_the_timer_first_with_the_ticks_change_id() -> None:
    value = first_visit()
    due = value["next_eval_at"]
    _, by_tick = profile_stage.tick(value, due + 5.0, "p-1")
    _, by_event = profile_stage.apply_event(value, ev("e2", due + 5 * DAY), offset=1, partition=0, profile_id="p-1")
    timer_ids = {c["change_id"] for c in by_tick.segment_changes}
    assert timer_ids and timer_ids <= {c["change_id"] for c in by_event.segment_changes}


def test_a_replayed_event_runs_no_timer_again() -> None:
    value = first_visit()
    due = value["next_eval_at"]
    after, first = profile_stage.apply_event(value, ev("e2", due + DAY), offset=1, partition=0, profile_id="p-1")
    again, replay = profile_stage.apply_event(after, ev("e2", due + DAY), offset=1, partition=0, profile_id="p-1")
    assert first.segment_changes and not replay.segment_changes and again == after
