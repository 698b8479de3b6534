"""Evaluate every rule for one profile; when to evaluate again without an event.

:func:`evaluate` takes the profile's features, its window state
(:mod:`app.segments.windows`), the time and its current memberships, and
returns the segments it belongs to now, each with a reason: the rule's name and
the value of every operand of its condition (the values that decided it).

Hysteresis
----------
Three mechanisms keep a profile on a boundary from flapping in and out:

* **Exit margin** (``exit_margin`` of a rule). A profile *enters* when the
  condition holds as written; a *member* is evaluated with every ``>``/``>=``
  threshold lowered, and every ``<``/``<=`` threshold raised, by the margin.
  ``count(product_view, 24h) > 3`` with margin 1 enters at 4 views and exits when
  the count falls to 2. It applies to comparisons of features and counts with a
  number; ``age()`` comparisons move with the clock in one direction only and
  need no margin.
* **Stay condition** (``stay_when``): a member is held to this condition instead of
  ``when``, for rules whose way out differs from their way in (a cart abandoner
  enters 30 minutes after an add to cart and stays until a purchase, rather than
  leaving at every new add to cart and re-entering 30 minutes later).
* **Minimum dwell** (``min_dwell``): a member stays for at least that long after
  entering, whatever the condition says (the reason then carries ``held_until``).

Timers
------
Rules on ``age()`` and ``count()`` change truth as time passes: a cart is
abandoned 30 minutes after the add, a customer lapses 60 days after the last
purchase, a view leaves the 24-hour window. :func:`next_evaluation_at` gives the
earliest time at which any rule's outcome can change without a new event; the
shell keeps it per profile (e.g. in a timer table) and re-runs :func:`evaluate`
for the profiles :func:`due` returns. :func:`evaluate_and_schedule` does both in
one pass (what the agent calls per event and per due timer). For ``count() OP
number`` the time is the bucket expiry at which the comparison flips, not every
expiry, so an active profile is not woken hourly.

Examples
--------
>>> from app.segments.rules import load_rules
>>> from app.segments import windows
>>> rules = load_rules('[rules.busy]\\nwhen = "count(search, 1h) >= 2"\\n')
>>> w, _ = windows.apply(None, "search", ts=10.0, offset=1)
>>> w, _ = windows.apply(w, "search", ts=20.0, offset=2)
>>> d = evaluate(rules, {}, w, now=30.0)
>>> d["busy"].reason
{'rule': 'busy', 'features': {'count(search, 1h)': 2}}
>>> next_evaluation_at(rules, {}, w, now=30.0)   # both searches leave the window at 7200
7200.0
>>> evaluate(rules, {}, w, now=7200.0)
{}
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.segments import windows
from app.segments.known_features import EVENT_TYPES
from app.segments.rules import (
    Age,
    And,
    Compare,
    Count,
    Expr,
    Feature,
    Number,
    Or,
    Rule,
    RuleSet,
    String,
)
from tables.hooks import State

#: A tick after a threshold time, for comparisons that change just *after* it (``>``, ``<=``).
EPSILON = 0.001


@dataclass(frozen=True)
class Decision:
    """A profile belongs to ``segment_id`` now, and why.

    Attributes
    ----------
    segment_id : str
    kind : str
        ``rule`` or ``cluster`` (the ``segment_kind`` of ``segment-changes``).
    reason : dict
        Plain JSON: ``{"rule": name, "features": {operand: value}}`` for rules,
        ``{"cluster": id, "distance": d, ...}`` for clusters.
    """

    segment_id: str
    kind: str
    reason: dict[str, Any] = field(default_factory=dict, compare=False)


class _Env:
    """One evaluation of a profile at one time: its features, window state and clock.

    ``shared`` memoises the raw values of ``count()`` and ``age()`` operands across the
    rule instances of the evaluation (they depend only on the window state, the features and
    ``now``); ``values`` is the current instance's reason: operand text -> value, in the order
    the condition reads them.
    """

    __slots__ = ("features", "now", "shared", "state", "values")

    def __init__(self, features: Mapping[str, Any], state: State | None, now: float) -> None:
        self.features = features
        self.state = state
        self.now = now
        self.shared: dict[str, Any] = {}
        self.values: dict[str, Any] = {}


Reader = Callable[[_Env], Any]


def _reader(o: Feature | Count | Age) -> Reader:
    """A function giving the operand's value in an evaluation (memoised for ``count()``, ``age()``)."""
    text = o.text
    if isinstance(o, Feature):
        name = o.name

        def feature(env: _Env) -> Any:
            return env.features.get(name)

        return feature
    if isinstance(o, Count):
        event, seconds = o.event, o.seconds

        def count(env: _Env) -> Any:
            shared = env.shared
            if text in shared:
                return shared[text]
            v = shared[text] = windows.count(env.state, event, seconds, env.now)
            return v

        return count
    name = o.name
    of_event = name in EVENT_TYPES

    def age(env: _Env) -> Any:
        shared = env.shared
        if text in shared:
            return shared[text]
        if of_event:
            v = windows.age(env.state, name, env.now)
        else:
            t = env.features.get(name)
            v = math.inf if not isinstance(t, int | float) or isinstance(t, bool) else float(env.now - t)
        shared[text] = v
        return v

    return age


def _is_number(v: Any) -> bool:
    kind = type(v)
    if kind is float or kind is int:  # the common case, decided without isinstance
        return True
    return isinstance(v, int | float) and not isinstance(v, bool)


def _apply_op(op: str, left: Any, right: Any) -> bool:
    try:
        if op == ">":
            return bool(left > right)
        if op == ">=":
            return bool(left >= right)
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
    except TypeError:
        return False
    if op == "==":
        return bool(left == right)
    return bool(left != right)


_NUMBER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


class _Node(Protocol):
    """A compiled condition: whether it holds, and when it may next change truth with no event."""

    def holds(self, env: _Env, margin: float) -> bool:
        """Whether the condition holds (every operand read and recorded in ``env.values``)."""

    def earliest(self, env: _Env, margin: float, best: float) -> float:
        """``best``, or an earlier time after ``env.now`` at which a comparison may change truth."""


class _Compare:
    """``left OP right``, compiled: the operand readers and the member's threshold shift are decided once.

    A comparison of a feature or ``count()`` with a number is the one a member's ``exit_margin``
    relaxes (``>``/``>=`` lowered, ``<``/``<=`` raised); ``age()`` moves with the clock in one
    direction only and needs none.
    """

    __slots__ = ("age_crossing", "count", "left", "left_text", "number_op", "op", "relax", "right",
                 "right_text", "right_value", "window_counts")

    def __init__(self, c: Compare) -> None:
        self.op = c.op
        self.number_op = _NUMBER_OPS[c.op]
        left, right = c.left, c.right
        if isinstance(left, Number | String):
            raise ValueError(f"the left side of a comparison must be a feature, count() or age(): {c}")
        self.left: Reader = _reader(left)
        self.left_text = left.text
        self.right: Reader | None = None if isinstance(right, Number | String) else _reader(right)
        self.right_text = "" if isinstance(right, Number | String) else right.text
        self.right_value: Any = right.value if isinstance(right, Number | String) else None
        self.relax = 0
        if isinstance(right, Number) and not isinstance(left, Age):
            self.relax = -1 if c.op in (">", ">=") else 1 if c.op in ("<", "<=") else 0
        # For the schedule: ``count() OP number`` flips at one bucket expiry; other ``count()``
        # operands change at their next expiry; ``age() OP number`` crosses at one time.
        self.count = left if isinstance(left, Count) and isinstance(right, Number) else None
        self.window_counts = () if self.count else tuple(o for o in (left, right) if isinstance(o, Count))
        self.age_crossing = (
            None if not (isinstance(left, Age) and isinstance(right, Number))
            else (right.value, EPSILON if c.op in (">", "<=") else 0.0)
        )

    def _threshold(self, right: Any, margin: float) -> Any:
        if margin and self.relax:
            return right - margin if self.relax < 0 else right + margin
        return right

    def holds(self, env: _Env, margin: float) -> bool:
        values = env.values
        left = self.left(env)
        values[self.left_text] = None if isinstance(left, float) and not math.isfinite(left) else left
        if self.right is None:
            right = self.right_value
        else:
            right = self.right(env)
            values[self.right_text] = None if isinstance(right, float) and not math.isfinite(right) else right
        if left is None or right is None:
            return False
        numbers = _is_number(left)
        if numbers != _is_number(right):
            return False
        threshold = self._threshold(right, margin)
        return self.number_op(left, threshold) if numbers else _apply_op(self.op, left, threshold)

    def earliest(self, env: _Env, margin: float, best: float) -> float:
        now = env.now
        c = self.count
        if c is not None:
            threshold = self._threshold(self.right_value, margin)
            n = self.left(env)
            before = _apply_op(self.op, n, threshold)
            for expiry, k in windows.expiries(env.state, c.event, c.seconds, now):
                n -= k
                if _apply_op(self.op, n, threshold) != before:
                    return expiry if now < expiry < best else best
            return best
        for o in self.window_counts:
            t = windows.next_change_at(env.state, o.event, o.seconds, now)
            if t is not None and now < t < best:
                best = t
        if self.age_crossing is not None:
            last_age = self.left(env)
            if math.isfinite(last_age):
                threshold, after = self.age_crossing
                t = now - last_age + threshold + after
                if now < t < best:
                    best = t
        return best


class _AllOrAny:
    """``and`` / ``or`` of compiled conditions.

    Every branch is read (no short-circuit), so the reason holds every value.
    """

    __slots__ = ("every", "items")

    def __init__(self, e: And | Or) -> None:
        self.every = isinstance(e, And)
        self.items: tuple[_Node, ...] = tuple(_compile(i) for i in e.items)

    def holds(self, env: _Env, margin: float) -> bool:
        results = [item.holds(env, margin) for item in self.items]
        return all(results) if self.every else any(results)

    def earliest(self, env: _Env, margin: float, best: float) -> float:
        for item in self.items:
            best = item.earliest(env, margin, best)
        return best


def _compile(e: Expr) -> _Node:
    return _Compare(e) if isinstance(e, Compare) else _AllOrAny(e)


class _CompiledRule:
    """A rule with its conditions compiled, per key of its family for ``for_each`` rules."""

    __slots__ = ("by_key", "head", "margin", "min_dwell", "name", "prefix", "rule", "stay", "tail", "when")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.name
        self.margin = rule.exit_margin
        self.min_dwell = rule.min_dwell
        self.when = _compile(rule.when)
        self.stay = None if rule.stay is None else _compile(rule.stay)
        self.prefix = None if rule.for_each is None else rule.for_each + "."
        self.head, _, self.tail = rule.segment.partition("{key}")
        #: (key, member) -> the compiled condition of a ``for_each`` rule's key.
        self.by_key: dict[tuple[str, bool], _Node] = {}

    def node(self, key: str | None, member: bool) -> _Node:
        """The condition to evaluate: ``stay_when`` for a member when set, else ``when``; per key with ``for_each``."""
        if key is None:
            return self.stay if member and self.stay is not None else self.when
        node = self.by_key.get((key, member))
        if node is None:
            if len(self.by_key) > 10_000:
                self.by_key.clear()
            node = self.by_key[key, member] = _compile(self.rule.condition_for(key, member))
        return node

    def instances(self, features: Mapping[str, Any], members: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """(segment id, key) of each instance: the rule itself, or one per key of its family.

        A ``for_each`` rule's keys are those of its features and of its current members (a
        member is re-evaluated even when its feature vanished), in key order.
        """
        prefix = self.prefix
        if prefix is None:
            return [(self.rule.segment, None)]
        skip = len(prefix)
        keys = {name[skip:] for name in features if name.startswith(prefix) and len(name) > skip}
        head, tail = self.head, self.tail
        for segment in members:
            if segment.startswith(head) and segment.endswith(tail) and len(segment) > len(head) + len(tail):
                keys.add(segment[len(head): len(segment) - len(tail)] if tail else segment[len(head):])
        return [(self.rule.segment_for(key), key) for key in sorted(keys)]


_COMPILED: dict[int, tuple[RuleSet, tuple[_CompiledRule, ...]]] = {}


def _compiled(rules: RuleSet) -> tuple[_CompiledRule, ...]:
    """The rule set compiled once (keyed by identity: a rule set is immutable, and hashing one walks every tree)."""
    entry = _COMPILED.get(id(rules))
    if entry is None or entry[0] is not rules:
        if len(_COMPILED) > 64:
            _COMPILED.clear()
        entry = _COMPILED[id(rules)] = (rules, tuple(_CompiledRule(rule) for rule in rules.rules))
    return entry[1]


def evaluate(
    rules: RuleSet,
    features: Mapping[str, Any],
    window_state: State | None,
    now: float,
    members: Mapping[str, Mapping[str, Any]] | None = None,
    exits: dict[str, Decision] | None = None,
) -> dict[str, Decision]:
    """The rule segments a profile belongs to at ``now``.

    Parameters
    ----------
    rules
        From :func:`app.segments.rules.load_rules`.
    features
        Feature name -> value (numbers, strings, timestamps as epoch seconds).
    window_state
        The profile's :mod:`app.segments.windows` state (``None``: no events yet).
    now
        Epoch seconds: the event time, or the timer time.
    members
        Current memberships, segment id -> ``{"since": epoch seconds, ...}``
        (``membership.segments(state)``); they get the hysteresis.
    exits
        When given, filled with a :class:`Decision` (reason: the values) for each
        current member that no longer qualifies, for the reasons of exit records.

    Returns
    -------
    dict
        Segment id -> :class:`Decision`, for every segment the profile is in.
    """
    return evaluate_and_schedule(rules, features, window_state, now, members, exits)[0]


def evaluate_and_schedule(
    rules: RuleSet,
    features: Mapping[str, Any],
    window_state: State | None,
    now: float,
    members: Mapping[str, Mapping[str, Any]] | None = None,
    exits: dict[str, Decision] | None = None,
) -> tuple[dict[str, Decision], float | None]:
    """:func:`evaluate` and the :func:`next_evaluation_at` of its result, in one pass.

    The schedule is computed against the memberships *after* this evaluation (a
    profile that just entered is timed as a member), which is what the shell stores.
    """
    members = members or {}
    out: dict[str, Decision] = {}
    best = math.inf
    env = _Env(features, window_state, now)
    for rule in _compiled(rules):
        for segment, key in rule.instances(features, members):
            current = members.get(segment)
            member = current is not None
            node = rule.node(key, member)
            values = env.values = {}
            holds = node.holds(env, rule.margin if member else 0.0)
            reason: dict[str, Any] = {"rule": rule.name, "features": values}
            since = None if current is None else float(current.get("since", now))
            if not holds and since is not None and rule.min_dwell and now < since + rule.min_dwell:
                holds = True
                reason["held_until"] = since + rule.min_dwell
            if holds:
                out[segment] = Decision(segment, "rule", reason)
            elif member and exits is not None:
                exits[segment] = Decision(segment, "rule", reason)
            # Schedule against the membership after this evaluation (its own condition).
            after = node if holds == member else rule.node(key, holds)
            best = after.earliest(env, rule.margin if holds else 0.0, best)
            if holds and rule.min_dwell:
                until = (since if since is not None else now) + rule.min_dwell
                if now < until < best:
                    best = until
    return out, (None if best == math.inf else best)


def next_evaluation_at(
    rules: RuleSet,
    features: Mapping[str, Any],
    window_state: State | None,
    now: float,
    members: Mapping[str, Mapping[str, Any]] | None = None,
) -> float | None:
    """The earliest time after ``now`` at which a rule's outcome may change with no new event.

    Candidates: the bucket expiry after which a ``count()`` comparison flips, an
    ``age()`` crossing its threshold, a member's minimum dwell ending. ``None`` when nothing is pending.
    Evaluating at a returned time that turns out to change nothing is harmless.
    """
    members = members or {}
    best = math.inf
    env = _Env(features, window_state, now)
    for rule in _compiled(rules):
        for segment, key in rule.instances(features, members):
            current = members.get(segment)
            best = rule.node(key, current is not None).earliest(env, rule.margin if current is not None else 0.0, best)
            if current is not None and rule.min_dwell:
                until = float(current.get("since", now)) + rule.min_dwell
                if now < until < best:
                    best = until
    return None if best == math.inf else best


def due(timers: Mapping[str, float | None], now: float) -> list[str]:
    """Keys (profile ids) whose next evaluation time has come, earliest first.

    >>> due({"p-1": 50.0, "p-2": 10.0, "p-3": 99.0, "p-4": None}, now=60.0)
    ['p-2', 'p-1']
    """
    ready = [(t, k) for k, t in timers.items() if t is not None and t <= now]
    return [k for _, k in sorted(ready)]
