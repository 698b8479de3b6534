"""The tick index hands a tick exactly the profiles due by then (against a plain dict model)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.profiles import timer_queue
from app.profiles.timer_queue import TimerQueue

profile_ids = st.sampled_from([f"p-{i}" for i in range(8)])
times = st.none() | st.integers(0, 50).map(float)
pops = st.tuples(st.just("pop"), st.just(""), st.integers(0, 60).map(float))
operations = st.lists(st.tuples(st.just("set"), profile_ids, times) | pops, max_size=80)


@given(operations)
def test_a_tick_gets_exactly_the_profiles_due_by_its_time_each_once(ops: list[tuple[str, str, float | None]]) -> None:
    queue, model = TimerQueue(), dict[str, float]()
    for op, profile_id, at in ops:
        if op == "set":
            queue.set(profile_id, at)
            if at is None:
                model.pop(profile_id, None)
            else:
                model[profile_id] = at
        else:
            assert at is not None
            expected = sorted(pid for pid, due in model.items() if due <= at)
            assert queue.pop_due(at) == expected
            for pid in expected:
                del model[pid]
        assert dict(queue.due) == model


def test_superseded_due_times_do_not_pile_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timer_queue, "COMPACT_MIN", 10)
    queue = TimerQueue()
    for step in range(1000):  # an active profile: every event moves its due time later
        queue.set("p-a", float(step))
    assert len(queue) == 1 and len(queue.heap) <= 2 * 1 + 10 + 1
    assert queue.pop_due(999.0) == ["p-a"]
