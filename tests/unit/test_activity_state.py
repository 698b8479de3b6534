"""The activity state: exact under replay and retries; merge and erase hooks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.ingest import activity
from tables.hooks import REGISTRY

events = st.lists(
    st.tuples(st.sampled_from(["page_view", "product_view", "purchase"]), st.integers(0, 30), st.floats(0, 1e6)),
    max_size=40,
)


def run(stream: list[tuple[str, int, float, int]], state: dict | None = None) -> dict | None:  # type: ignore[type-arg]
    for event_type, event_id, ts, offset in stream:
        state, _ = activity.apply(state, event_type, f"e{event_id}", ts, offset)
    return state


@given(events, st.integers(0, 40))
def test_replaying_any_suffix_of_the_input_changes_nothing(items: list[tuple[str, int, float]], cut: int) -> None:
    stream = [(t, i, ts, offset) for offset, (t, i, ts) in enumerate(items)]
    once = run(stream)
    again = run(stream[cut:], once)
    assert again == once


@given(events)
def test_each_event_id_counts_once(items: list[tuple[str, int, float]]) -> None:
    stream = [(t, i, ts, offset) for offset, (t, i, ts) in enumerate(items)]
    state = run(stream)
    distinct_ids = len({i for _, i, _ in items})
    assert (state["events"] if state else 0) == distinct_ids


def test_counts_and_seen_interval() -> None:
    state = run([("page_view", 1, 50.0, 0), ("purchase", 2, 20.0, 1), ("page_view", 3, 90.0, 2)])
    assert state is not None
    assert state["counts"] == {"page_view": 2, "purchase": 1}
    assert (state["first_seen"], state["last_seen"]) == (20.0, 90.0)
    assert "recent_ids" not in activity.summary(state)


def test_merge_hook_sums_counts_and_widens_the_interval() -> None:
    a = run([("page_view", 1, 50.0, 0)])
    b = run([("page_view", 2, 10.0, 0), ("purchase", 3, 70.0, 1)])
    assert a is not None and b is not None
    merged = REGISTRY["activity"].merge(a, b)
    assert merged["counts"] == {"page_view": 2, "purchase": 1}
    assert merged["events"] == 3
    assert (merged["first_seen"], merged["last_seen"]) == (10.0, 70.0)


def test_erase_hook_deletes_the_state() -> None:
    state = run([("page_view", 1, 50.0, 0)])
    assert state is not None
    assert REGISTRY["activity"].erase(state) is None


def test_applying_an_event_keeps_what_ingest_forwarded_to_identity() -> None:
    # Losing identity_seen made ingest forward every event to the identity stage.
    state, _ = activity.apply(None, "page_view", "e1", 10.0, 0)
    state = {**state, "identity_seen": ["anonymous_id:k"]}
    state, outcome = activity.apply(state, "search", "e2", 20.0, 1)
    assert outcome == "applied"
    assert state["identity_seen"] == ["anonymous_id:k"]
