"""The value of the ``segments`` table per profile: window counts and memberships together.

::

    {"windows": <app.segments.windows state>, "members": <app.segments.membership state>}

:data:`HOOKS` (registered as ``segments`` in :data:`tables.hooks.REGISTRY`) makes
the table follow identity changes: merge sums the windows and unions the
memberships, split keeps the state with the part that kept the id, erase deletes.
The ``segment-changes`` records of those events come from
:func:`app.segments.membership.merge_changes`, ``split_changes`` and ``erase_changes``.

Examples
--------
>>> s = new_state()
>>> s, outcome = apply_event(s, "search", ts=10.0, offset=4)
>>> outcome, s["windows"]["offset"]
('applied', 4)
>>> HOOKS.merge(s, new_state())["windows"]["last"]
{'search': 10.0}
"""

from __future__ import annotations

from app.segments import membership, windows
from tables.hooks import KeepOnSplit, State, register


def new_state() -> State:
    """Empty windows and no memberships."""
    return {"windows": windows.new_state(), "members": membership.new_state()}


def apply_event(state: State | None, event_type: str, ts: float, offset: int) -> tuple[State, windows.Outcome]:
    """Count one event in the windows (``replayed`` when ``offset`` was already applied)."""
    current = state if state is not None else new_state()
    w, outcome = windows.apply(current["windows"], event_type, ts, offset)
    return ({**current, "windows": w} if outcome == "applied" else current), outcome


class SegmentsHooks(KeepOnSplit[State]):
    """Merge: windows summed (:class:`~app.segments.windows.WindowHooks`), memberships unioned."""

    def merge(self, surviving: State, absorbed: State) -> State:
        return {
            "windows": windows.WindowHooks().merge(surviving["windows"], absorbed["windows"]),
            "members": membership.union(surviving["members"], [absorbed["members"]]),
        }


HOOKS = register("segments", SegmentsHooks())
