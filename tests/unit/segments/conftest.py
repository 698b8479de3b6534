"""A scripted profile: events and feature updates in, segment changes out, timers honoured."""

from __future__ import annotations

from typing import Any

import pytest

from app.segments import evaluate as ev
from app.segments import membership, state
from app.segments.rules import RuleSet, load_rules

T0 = 1_718_323_200.0  # 2024-06-14T00:00:00Z, a day boundary
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


class Script:
    """Drives the pure segment functions as the agent will: per event, and per due timer."""

    def __init__(self, rules: RuleSet, profile_id: str = "p-1") -> None:
        self.rules = rules
        self.profile_id = profile_id
        self.state = state.new_state()
        self.features: dict[str, Any] = {}
        self.offset = 0
        self.timer: float | None = None
        self.changes: list[dict[str, Any]] = []
        self.evaluations = 0

    def _evaluate(self, now: float, basis: str) -> None:
        members = membership.segments(self.state["members"])
        exits: dict[str, ev.Decision] = {}
        decisions, timer = ev.evaluate_and_schedule(
            self.rules, self.features, self.state["windows"], now, members, exits
        )
        new, changes = membership.diff(
            self.profile_id, self.state["members"], decisions, now, basis, kinds=("rule",), exits=exits
        )
        self.state = {**self.state, "members": new}
        self.changes.extend(changes)
        self.evaluations += 1
        # The one-pass schedule agrees with the stand-alone function on the new memberships.
        assert timer == ev.next_evaluation_at(self.rules, self.features, self.state["windows"], now,
                                              membership.segments(new))
        self.timer = timer

    def event(self, event_type: str, ts: float, **features: Any) -> list[dict[str, Any]]:
        """One event (and the profile's features after it); returns the changes it caused."""
        before = len(self.changes)
        self.offset += 1
        self.state, outcome = state.apply_event(self.state, event_type, ts, self.offset)
        assert outcome == "applied"
        self.features.update({k.replace("__", "."): v for k, v in features.items()})
        self._evaluate(ts, f"clickstream:0:{self.offset}")
        return self.changes[before:]

    def advance(self, until: float) -> list[dict[str, Any]]:
        """Let time pass with no event: fire every due timer up to ``until``."""
        before = len(self.changes)
        while self.timer is not None and ev.due({self.profile_id: self.timer}, until):
            self._evaluate(self.timer, f"timer:{self.timer}")
        return self.changes[before:]

    def members(self) -> set[str]:
        return set(membership.segments(self.state["members"]))


def summary(changes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["change"], c["segment_id"]) for c in changes]


@pytest.fixture(scope="session")
def default_rules() -> RuleSet:
    return load_rules()


@pytest.fixture
def script(default_rules: RuleSet) -> Script:
    return Script(default_rules)
