"""The per-profile state of the profiles stage: sessions, the unified profile and rule segments.

One table value per ``profile_id`` holds all three, so one changelog (and one
watermark, see :mod:`tables.exact`) covers everything the stage writes for an input
record: two tables fed by the same topic would each rewind it on their own.

``partition`` is kept in the value because closing sessions on a timer tick must only
touch the keys of the tick's partition (their changelog partition).

Examples
--------
>>> from app.sessions.state import ev
>>> value, out = apply_event(None, ev("e1", 1000.0), offset=0, partition=3, profile_id="p-1")
>>> value["sessions"]["open"][0]["events"], value["profile"]["counts"]["page_view"], value["partition"]
(1, 1, 3)
>>> [(c["segment_id"], c["change"]) for c in out.segment_changes]   # first seen just now
[('new_visitor', 'entered')]
>>> value, out = tick(value, now=1000.0 + 1800 + 301, profile_id="p-1")
>>> [c["close_reason"] for c in out.closed_sessions], has_open_sessions(value)
(['inactivity'], False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from app.events.validation import Event
from app.profiles import unified as profile
from app.profiles.features import rule_features
from app.profiles.quality import QualityMonitor
from app.segments import membership
from app.segments import state as segments
from app.segments.evaluate import evaluate_and_schedule
from app.segments.rules import RuleSet, load_rules
from app.sessions import state as sessions
from tables.hooks import State, register


@lru_cache(maxsize=1)
def default_rules() -> RuleSet:
    """The shipped rule file (``app/segments/default_rules.toml``)."""
    return load_rules()


@dataclass(frozen=True)
class StageConfig:
    sessions: sessions.SessionConfig = field(default_factory=sessions.SessionConfig)
    profile: profile.ProfileConfig = field(default_factory=profile.ProfileConfig)
    rules: RuleSet = field(default_factory=default_rules)


DEFAULT = StageConfig()


@dataclass(frozen=True)
class Outputs:
    """What one input record makes the stage emit."""

    closed_sessions: list[sessions.Session] = field(default_factory=list)
    segment_changes: list[dict[str, Any]] = field(default_factory=list)
    #: Events too late for their sessions (counted by the profile, in no session summary).
    late_events: int = 0
    #: Timed rule evaluations run (a tick's share of its evaluation budget).
    evaluations: int = 0


def apply_event(
    value: State | None,
    event: Event,
    offset: int,
    partition: int,
    profile_id: str,
    config: StageConfig = DEFAULT,
    monitor: QualityMonitor | None = None,
    basis: str | None = None,
) -> tuple[State, Outputs]:
    """Fold one event into the profile's sessions, features and segments.

    Each part keeps its own source offset, so a replayed event changes nothing and emits
    nothing. ``basis`` (default ``offset:<offset>``) names the input position in the ids
    of the segment changes, so a replay that does emit produces the same ids.
    """
    current = value or {}
    # Timed rules that fell due before this event are decided at their due times first, so a
    # change is dated when it happened, whether an event or a tick comes first after it.
    current, timer_changes = catch_up(current, event.ts, profile_id, config)
    # The profile part keeps the value's one record of recent event ids and decides for the
    # sessions (both are updated by every record, so one record serves both; two were a third of
    # a value's bytes). The windows count by offset only, so an event sent twice (a redirect
    # after a merge, ingest's re-forward after a crash) counts once there too.
    profile_state, profile_outcome = profile.apply(current.get("profile"), event, offset, config.profile, monitor)
    session_state, session_outcome, closed = sessions.apply(
        current.get("sessions"), event, offset, config.sessions, duplicate=profile_outcome == "duplicate_event_id"
    )
    segment_state, outcome = (
        segments.apply_event(current.get("segments"), event.type, event.ts, offset)
        if profile_outcome == "applied"
        else (current.get("segments") or segments.new_state(), profile_outcome)
    )
    new = {**current, "sessions": session_state, "profile": profile_state, "segments": segment_state,
           "partition": partition}
    changes: list[dict[str, Any]] = []
    if outcome == "applied":
        new, changes = evaluate(new, profile_id, event.ts, basis or f"offset:{offset}", config)
    return new, Outputs(closed, [*timer_changes, *changes], int(session_outcome == "late"))


def tick(
    value: State, now: float, profile_id: str, config: StageConfig = DEFAULT, max_evaluations: int | None = None
) -> tuple[State, Outputs]:
    """At stream time ``now``: close the sessions whose time is up, decide the rules that fell due
    (at most ``max_evaluations`` of them, default :data:`MAX_CATCH_UP`; the rest stay due)."""
    session_state, closed = sessions.close_expired(value["sessions"], now, config.sessions)
    new = {**value, "sessions": session_state} if closed else value
    steps = MAX_CATCH_UP if max_evaluations is None else min(MAX_CATCH_UP, max_evaluations)
    new, changes, evaluations = _catch_up(new, now, profile_id, config, steps)
    return new, Outputs(closed, changes, evaluations=evaluations)


#: Most timed evaluations one record or tick runs for a profile (each moves the next one later).
MAX_CATCH_UP = 32


def catch_up(
    value: State, until: float, profile_id: str, config: StageConfig = DEFAULT
) -> tuple[State, list[dict[str, Any]]]:
    """Run the rule evaluations due up to stream time ``until``, each at its own due time.

    Ticks come every few seconds of wall time, which is hours of stream time when a backlog
    or a replay is read; deciding at the tick's time would date a timed exit (a window
    running out, cart abandonment) late and make a run's changes depend on tick timing. The
    evaluation time is never before the profile's last event (a merged or split state asks
    for re-evaluation with ``next_eval_at`` 0). The change ids name the due time, so a tick
    and an event that find the same due evaluation produce the same ids.

    >>> from app.sessions.state import ev
    >>> value, _ = apply_event(None, ev("e1", 1000.0), offset=0, partition=0, profile_id="p-1")
    >>> due = value["next_eval_at"]
    >>> later, changes = catch_up(value, due + 86_400 * 30, "p-1")
    >>> due, [(c["segment_id"], c["change"], c["at"]) for c in changes]   # dated when due, not 30 days later
    (605800.0, [('new_visitor', 'exited', '1970-01-08T00:16:40.000Z')])
    """
    value, changes, _ = _catch_up(value, until, profile_id, config, MAX_CATCH_UP)
    return value, changes


def _catch_up(
    value: State, until: float, profile_id: str, config: StageConfig, max_steps: int
) -> tuple[State, list[dict[str, Any]], int]:
    """:func:`catch_up` for at most ``max_steps`` evaluations; also returns how many it ran."""
    changes: list[dict[str, Any]] = []
    steps = 0
    while steps < max_steps:
        due = value.get("next_eval_at")
        if due is None or due > until or "segments" not in value:
            break
        last_event = (value.get("profile") or {}).get("last_seen")
        at = max(float(due), float(last_event)) if isinstance(last_event, int | float) else float(due)
        value, more = evaluate(value, profile_id, at, f"timer:{at:.3f}", config)
        changes += more
        steps += 1
    return value, changes, steps


def evaluate(
    value: State, profile_id: str, now: float, basis: str, config: StageConfig = DEFAULT
) -> tuple[State, list[Any]]:
    """Re-evaluate the rule segments at ``now``: the new value (memberships, next evaluation) and the changes."""
    seg = value["segments"]
    decisions, next_at = evaluate_and_schedule(
        config.rules, rule_features(value["profile"], now), seg["windows"], now, membership.segments(seg["members"])
    )
    members, changes = membership.diff(profile_id, seg["members"], decisions, now, basis, kinds=("rule",))
    return {**value, "segments": {**seg, "members": members}, "next_eval_at": next_at}, changes


def next_evaluation_at(value: State | None) -> float | None:
    return value.get("next_eval_at") if value else None


def next_tick_at(value: State | None, config: StageConfig = DEFAULT) -> float | None:
    """The earliest stream time at which :func:`tick` may change ``value``: an open session's
    close or a rule evaluation falling due; None when no tick can change it.

    >>> from app.sessions.state import ev
    >>> value, _ = apply_event(None, ev("e1", 1000.0), offset=0, partition=0, profile_id="p-1")
    >>> next_tick_at(value)   # the session closes after 1000 + 30 min gap + 5 min lateness
    3100.0
    >>> tick(value, 3100.0, "p-1")[1].closed_sessions, len(tick(value, 3100.5, "p-1")[1].closed_sessions)
    ([], 1)
    """
    if not value:
        return None
    times = [t for t in (sessions.next_close_at(value.get("sessions"), config.sessions),
                         next_evaluation_at(value)) if t is not None]
    return float(min(times)) if times else None


def has_open_sessions(value: State | None) -> bool:
    return bool(value and value.get("sessions") and value["sessions"]["open"])


def serving(value: State, now: float, config: StageConfig = DEFAULT) -> dict[str, Any]:
    """What Redis serves for a profile: features summary, the active session, the segments."""
    return {
        **profile.serving(value["profile"], now, config.profile),
        "session": sessions.serving(value["sessions"]),
        "segments": sorted(membership.segments(value.get("segments", {}).get("members"))),
    }


class ProfileStageHooks:
    """Merge, split and erase each part with its own hook."""

    def merge(self, surviving: State, absorbed: State) -> State:
        return {
            "sessions": sessions.HOOKS.merge(surviving["sessions"], absorbed["sessions"]),
            "profile": profile.HOOKS.merge(surviving["profile"], absorbed["profile"]),
            "segments": segments.HOOKS.merge(
                surviving.get("segments") or segments.new_state(), absorbed.get("segments") or segments.new_state()
            ),
            "partition": surviving["partition"],
            # Re-evaluated on the next event or tick of the survivor.
            "next_eval_at": 0.0,
        }

    def split(self, state: State, profile_id: str, new_profile_ids: Sequence[str]) -> dict[str, State]:
        session_parts = sessions.HOOKS.split(state["sessions"], profile_id, new_profile_ids)
        profile_parts = profile.HOOKS.split(state["profile"], profile_id, new_profile_ids)
        segment_parts = segments.HOOKS.split(state.get("segments") or segments.new_state(), profile_id, new_profile_ids)
        return {
            pid: {
                "sessions": session_parts.get(pid) or sessions.new_state(),
                "profile": profile_parts.get(pid) or profile.new_state(),
                "segments": segment_parts.get(pid) or segments.new_state(),
                "partition": state["partition"],
                "next_eval_at": 0.0,
            }
            for pid in {*session_parts, *profile_parts, *segment_parts}
        }

    def erase(self, state: State) -> State | None:
        erased_sessions = sessions.HOOKS.erase(state["sessions"])
        erased_profile = profile.HOOKS.erase(state["profile"])
        erased_segments = segments.HOOKS.erase(state.get("segments") or segments.new_state())
        if erased_sessions is None and erased_profile is None and erased_segments is None:
            return None
        return {"sessions": erased_sessions, "profile": erased_profile, "segments": erased_segments,
                "partition": state["partition"]}


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

    def copy(self) -> StreamClock:
        """A clock that goes on from this one's times independently (a fold restarted from it)."""
        return StreamClock(dict(self._latest))

    def now(self, partition: int, wall: float) -> float | None:
        latest = self._latest.get(partition)
        if latest is None:
            return None
        event_ts, seen_at = latest
        return event_ts + max(0.0, wall - seen_at)
