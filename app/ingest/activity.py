"""Per-anonymous-id activity: event counts by type, first and last seen.

The first state of the pipeline, keyed by the keyed hash of ``anonymous_id`` (the
``clickstream`` key). Pure functions only; the Faust table lives in
:mod:`app.runtime.tables`.

Exactness: each state carries the source ``offset`` of the last event it reflects,
so a replayed event (offset not newer) is recognised and not applied twice, and
the last ``dedup_window`` event ids, so a publisher retry with a new offset but the
same ``event_id`` is applied once.

Examples
--------
>>> s = None
>>> s, applied = apply(s, "page_view", "e1", ts=100.0, offset=7)
>>> s, applied = apply(s, "page_view", "e2", ts=160.0, offset=8)
>>> s["counts"], s["first_seen"], s["last_seen"], applied
({'page_view': 2}, 100.0, 160.0, 'applied')
>>> apply(s, "page_view", "e2", ts=160.0, offset=8)[1]   # replay of offset 8
'replayed'
>>> apply(s, "page_view", "e2", ts=160.0, offset=9)[1]   # retry: same id, new offset
'duplicate_event_id'
>>> apply({**s, "identity_seen": ["anonymous_id:k"]}, "search", "e3", ts=170.0, offset=9)[0]["identity_seen"]
['anonymous_id:k']
"""

from __future__ import annotations

from typing import Any, Literal

from app.events import dedupe
from tables.hooks import KeepOnSplit, State, register

Outcome = Literal["applied", "replayed", "duplicate_event_id"]
DEFAULT_DEDUP_WINDOW = 64


def new_state() -> State:
    return {"counts": {}, "events": 0, "first_seen": None, "last_seen": None, "offset": -1, "recent_ids": ""}


def apply(
    state: State | None,
    event_type: str,
    event_id: str,
    ts: float,
    offset: int,
    dedup_window: int = DEFAULT_DEDUP_WINDOW,
) -> tuple[State, Outcome]:
    """Fold one event into ``state``; return the new state and what happened.

    ``state`` is not modified; a replayed or duplicate event returns it unchanged.
    """
    current = state if state is not None else new_state()
    if offset <= current["offset"]:
        return current, "replayed"
    duplicate, admitted = dedupe.admit(current, event_id, dedup_window)
    # Still advance the offset on a duplicate: the retry was seen, so its replay is a replay too.
    admitted["offset"] = offset
    if duplicate:
        return admitted, "duplicate_event_id"
    counts = dict(current["counts"])
    counts[event_type] = counts.get(event_type, 0) + 1
    first = current["first_seen"]
    last = current["last_seen"]
    return {
        # Other stages' entries in the value (what ingest forwarded to identity) are kept.
        **admitted,
        "counts": counts,
        "events": current["events"] + 1,
        "first_seen": ts if first is None or ts < first else first,
        "last_seen": ts if last is None or ts > last else last,
    }, "applied"


def summary(state: State) -> dict[str, Any]:
    """The serving view of a state: what Redis holds (no offsets, no event ids)."""
    return {
        "events": state["events"],
        "first_seen": state["first_seen"],
        "last_seen": state["last_seen"],
        "counts": state["counts"],
    }


class ActivityHooks(KeepOnSplit[State]):
    """Merge sums counts and widens the seen interval; split keeps; erase deletes the key."""

    def merge(self, surviving: State, absorbed: State) -> State:
        counts = dict(surviving["counts"])
        for event_type, n in absorbed["counts"].items():
            counts[event_type] = counts.get(event_type, 0) + n
        firsts = [t for t in (surviving["first_seen"], absorbed["first_seen"]) if t is not None]
        lasts = [t for t in (surviving["last_seen"], absorbed["last_seen"]) if t is not None]
        return {
            **surviving,
            "counts": counts,
            "events": surviving["events"] + absorbed["events"],
            "first_seen": min(firsts) if firsts else None,
            "last_seen": max(lasts) if lasts else None,
        }

    def erase(self, state: State) -> State | None:
        return None


HOOKS = register("activity", ActivityHooks())
