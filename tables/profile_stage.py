"""The per-profile state of the profiles stage: open sessions and the unified profile, together.

One table value per ``profile_id`` holds both states, so one changelog (and one
watermark, see :mod:`tables.exact`) covers everything the stage writes for an input
record: two tables fed by the same topic would each rewind it on their own.

``partition`` is kept in the value because closing sessions on a timer tick must only
touch the keys of the tick's partition (their changelog partition).

Examples
--------
>>> from tables.sessions import ev
>>> value, closed = apply_event(None, ev("e1", 1000.0), offset=0, partition=3)
>>> value["sessions"]["open"][0]["events"], value["profile"]["counts"]["page_view"], value["partition"], closed
(1, 1, 3, [])
>>> value, closed = tick(value, now=1000.0 + 1800 + 301)
>>> [c["close_reason"] for c in closed], has_open_sessions(value)
(['inactivity'], False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.validation import Event
from tables import profile, sessions
from tables.hooks import State, register
from tables.quality import QualityMonitor


@dataclass(frozen=True)
class StageConfig:
    sessions: sessions.SessionConfig = field(default_factory=sessions.SessionConfig)
    profile: profile.ProfileConfig = field(default_factory=profile.ProfileConfig)


DEFAULT = StageConfig()


def apply_event(
    value: State | None,
    event: Event,
    offset: int,
    partition: int,
    config: StageConfig = DEFAULT,
    monitor: QualityMonitor | None = None,
) -> tuple[State, list[sessions.Session]]:
    """Fold one event into the profile's sessions and features; return the value and closed sessions.

    Each part keeps its own source offset, so a replayed event changes neither.
    """
    current = value or {}
    session_state, _, closed = sessions.apply(current.get("sessions"), event, offset, config.sessions)
    profile_state, _ = profile.apply(current.get("profile"), event, offset, config.profile, monitor)
    return {"sessions": session_state, "profile": profile_state, "partition": partition}, closed


def tick(value: State, now: float, config: StageConfig = DEFAULT) -> tuple[State, list[sessions.Session]]:
    """Close the sessions whose time is up at stream time ``now``."""
    session_state, closed = sessions.close_expired(value["sessions"], now, config.sessions)
    if not closed:
        return value, []
    return {**value, "sessions": session_state}, closed


def has_open_sessions(value: State | None) -> bool:
    return bool(value and value.get("sessions") and value["sessions"]["open"])


def serving(value: State, now: float, config: StageConfig = DEFAULT) -> dict[str, Any]:
    """What Redis serves for a profile: features summary plus the active session."""
    return {
        **profile.serving(value["profile"], now, config.profile),
        "session": sessions.serving(value["sessions"]),
    }


class ProfileStageHooks:
    """Merge, split and erase each part with its own hook."""

    def merge(self, surviving: State, absorbed: State) -> State:
        return {
            "sessions": sessions.HOOKS.merge(surviving["sessions"], absorbed["sessions"]),
            "profile": profile.HOOKS.merge(surviving["profile"], absorbed["profile"]),
            "partition": surviving["partition"],
        }

    def split(self, state: State, profile_id: str, new_profile_ids: Sequence[str]) -> dict[str, State]:
        session_parts = sessions.HOOKS.split(state["sessions"], profile_id, new_profile_ids)
        profile_parts = profile.HOOKS.split(state["profile"], profile_id, new_profile_ids)
        return {
            pid: {
                "sessions": session_parts.get(pid) or sessions.new_state(),
                "profile": profile_parts.get(pid) or profile.new_state(),
                "partition": state["partition"],
            }
            for pid in {*session_parts, *profile_parts}
        }

    def erase(self, state: State) -> State | None:
        erased_sessions = sessions.HOOKS.erase(state["sessions"])
        erased_profile = profile.HOOKS.erase(state["profile"])
        if erased_sessions is None and erased_profile is None:
            return None
        return {"sessions": erased_sessions, "profile": erased_profile, "partition": state["partition"]}


HOOKS = register("profiles", ProfileStageHooks())


@dataclass
class StreamClock:
    """Stream time per partition: the newest event time, moved on by wall time while idle.

    Simulated or replayed traffic carries event times far behind the wall clock; closing
    its sessions by the wall clock would cut every one of them. Real-time traffic makes
    this the wall clock.

    >>> clock = StreamClock()
    >>> clock.observe(0, event_ts=1000.0, wall=50_000.0)
    >>> clock.now(0, wall=50_030.0), clock.now(1, wall=50_030.0)
    (1030.0, None)
    """

    _latest: dict[int, tuple[float, float]] = field(default_factory=dict)

    def observe(self, partition: int, event_ts: float, wall: float) -> None:
        latest = self._latest.get(partition)
        if latest is None or event_ts >= latest[0]:
            self._latest[partition] = (event_ts, wall)

    def now(self, partition: int, wall: float) -> float | None:
        latest = self._latest.get(partition)
        if latest is None:
            return None
        event_ts, seen_at = latest
        return event_ts + max(0.0, wall - seen_at)
