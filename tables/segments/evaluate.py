"""Evaluate every rule for one profile; when to evaluate again without an event.

:func:`evaluate` takes the profile's features, its window state
(:mod:`tables.segments.windows`), the time and its current memberships, and
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
>>> from tables.segments.rules import load_rules
>>> from tables.segments import windows
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tables.hooks import State
from tables.segments import windows
from tables.segments.known_features import EVENT_TYPES
from tables.segments.rules import (
    Age,
    And,
    Compare,
    Count,
    Expr,
    Feature,
    Number,
    Operand,
    Or,
    Rule,
    RuleSet,
    String,
)

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


class _Context:
    """Operand values of one profile at one time, for one rule instance.

    ``shared`` memoises the raw values of feature, ``count()`` and ``age()`` operands
    across the instances of one evaluation (they depend only on the features, the
    window state and ``now``); ``values`` records, per instance, what its reason shows.
    """

    __slots__ = ("features", "now", "shared", "state", "values")

    def __init__(
        self, features: Mapping[str, Any], state: State | None, now: float, shared: dict[Any, Any] | None = None
    ) -> None:
        self.features = features
        self.state = state
        self.now = now
        self.shared = {} if shared is None else shared
        self.values: dict[str, Any] = {}

    def value(self, o: Operand) -> Any:
        """The operand's value, recorded for the reason."""
        if isinstance(o, Number | String):
            return o.value
        v = self.raw(o)
        self.values[o.text] = None if isinstance(v, float) and not math.isfinite(v) else v
        return v

    def raw(self, o: Feature | Count | Age) -> Any:
        """The value of a feature, ``count()`` or ``age()`` operand, memoised, not recorded."""
        shared = self.shared
        text = o.text
        if text in shared:
            return shared[text]
        if isinstance(o, Feature):
            v = self.features.get(o.name)
        elif isinstance(o, Count):
            v = windows.count(self.state, o.event, o.seconds, self.now)
        else:
            v = self.age(o.name)
        shared[text] = v
        return v

    def age(self, name: str) -> float:
        if name in EVENT_TYPES:
            return windows.age(self.state, name, self.now)
        t = self.features.get(name)
        return math.inf if not isinstance(t, int | float) or isinstance(t, bool) else float(self.now - t)


def _is_number(v: Any) -> bool:
    kind = type(v)
    if kind is float or kind is int:  # the common case, decided without isinstance
        return True
    return isinstance(v, int | float) and not isinstance(v, bool)


def _relaxed(c: Compare, threshold: Any, margin: float) -> Any:
    """A member's threshold: ``>``/``>=`` lowered and ``<``/``<=`` raised by ``margin``."""
    if margin and isinstance(c.right, Number) and not isinstance(c.left, Age):
        if c.op in (">", ">="):
            return threshold - margin
        if c.op in ("<", "<="):
            return threshold + margin
    return threshold


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


def _compare(c: Compare, ctx: _Context, margin: float) -> bool:
    left, right = ctx.value(c.left), ctx.value(c.right)
    if left is None or right is None:
        return False
    if _is_number(left) != _is_number(right):
        return False
    return _apply_op(c.op, left, _relaxed(c, right, margin))


def _holds(e: Expr, ctx: _Context, margin: float) -> bool:
    # Every branch is evaluated (no short-circuit) so the reason holds every value.
    if isinstance(e, Compare):
        return _compare(e, ctx, margin)
    results = [_holds(i, ctx, margin) for i in e.items]
    return all(results) if isinstance(e, And) else any(results)


def _instances(
    rule: Rule, features: Mapping[str, Any], members: Mapping[str, Any]
) -> Iterator[tuple[str, Expr]]:
    """(segment id, condition) of a rule: one, or one per key of its family (``stay_when`` for members)."""
    if rule.for_each is None:
        yield rule.segment, rule.condition(rule.segment in members)
        return
    prefix = rule.for_each + "."
    keys = {name[len(prefix):] for name in features if name.startswith(prefix) and len(name) > len(prefix)}
    head, _, tail = rule.segment.partition("{key}")
    for segment in members:  # current members are re-evaluated even when their feature vanished
        if segment.startswith(head) and segment.endswith(tail) and len(segment) > len(head) + len(tail):
            keys.add(segment[len(head): len(segment) - len(tail)] if tail else segment[len(head):])
    for key in sorted(keys):
        segment = rule.segment_for(key)
        yield segment, rule.condition_for(key, segment in members)


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
        From :func:`tables.segments.rules.load_rules`.
    features
        Feature name -> value (numbers, strings, timestamps as epoch seconds).
    window_state
        The profile's :mod:`tables.segments.windows` state (``None``: no events yet).
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
    shared: dict[Any, Any] = {}
    for rule in rules.rules:
        for segment, expr in _instances(rule, features, members):
            ctx = _Context(features, window_state, now, shared)
            current = members.get(segment)
            holds = _holds(expr, ctx, rule.exit_margin if current is not None else 0.0)
            reason: dict[str, Any] = {"rule": rule.name, "features": ctx.values}
            since = None if current is None else float(current.get("since", now))
            if not holds and since is not None and rule.min_dwell and now < since + rule.min_dwell:
                holds = True
                reason["held_until"] = since + rule.min_dwell
            if holds:
                out[segment] = Decision(segment, "rule", reason)
            elif current is not None and exits is not None:
                exits[segment] = Decision(segment, "rule", reason)
            # Schedule against the membership after this evaluation (its own condition).
            after = expr
            if holds != (current is not None):
                after = _condition(rule, segment, holds)
            for t in _times(after, ctx, rule.exit_margin if holds else 0.0):
                if now < t < best:
                    best = t
            if holds and rule.min_dwell:
                until = (since if since is not None else now) + rule.min_dwell
                if now < until < best:
                    best = until
    return out, (None if best == math.inf else best)


def _condition(rule: Rule, segment: str, member: bool) -> Expr:
    if rule.for_each is None:
        return rule.condition(member)
    head, _, tail = rule.segment.partition("{key}")
    key = segment[len(head): len(segment) - len(tail)] if tail else segment[len(head):]
    return rule.condition_for(key, member)


def _times(e: Expr, ctx: _Context, margin: float) -> Iterator[float]:
    """Times after ``ctx.now`` at which a comparison of ``e`` may change truth with no event.

    ``count() OP number``: the first bucket expiry after which the comparison (with the
    member's margin) flips, so a profile is not woken for every hourly bucket;
    other ``count()`` comparisons: the next expiry; ``age() OP number``: the crossing.
    """
    if isinstance(e, And | Or):
        for item in e.items:
            yield from _times(item, ctx, margin)
        return
    if isinstance(e.left, Count) and isinstance(e.right, Number):
        c = e.left
        threshold = _relaxed(e, e.right.value, margin)
        n = ctx.raw(c)
        before = _apply_op(e.op, n, threshold)
        for expiry, k in windows.expiries(ctx.state, c.event, c.seconds, ctx.now):
            n -= k
            if _apply_op(e.op, n, threshold) != before:
                yield expiry
                break
        return
    for o in (e.left, e.right):
        if isinstance(o, Count):
            t = windows.next_change_at(ctx.state, o.event, o.seconds, ctx.now)
            if t is not None:
                yield t
    if isinstance(e.left, Age) and isinstance(e.right, Number):
        last_age = ctx.raw(e.left)
        if math.isfinite(last_age):
            crossing = ctx.now - last_age + e.right.value
            yield crossing + EPSILON if e.op in (">", "<=") else crossing


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
    for rule in rules.rules:
        for segment, expr in _instances(rule, features, members):
            ctx = _Context(features, window_state, now)
            current = members.get(segment)
            for t in _times(expr, ctx, rule.exit_margin if current is not None else 0.0):
                if now < t < best:
                    best = t
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
