"""Compiled conditions decide, record and schedule exactly as the condition language defines.

The oracle below reads an expression tree directly, the documented way (the interpreter the
evaluator used before conditions were compiled, kept here as the definition): every operand read
and recorded in order, a member's numeric thresholds relaxed by the margin, and the times at
which a comparison may change truth with no event.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.segments import windows
from app.segments.evaluate import EPSILON, _compile, _Env
from app.segments.known_features import EVENT_TYPES
from app.segments.rules import Age, And, Compare, Count, Feature, Number, String
from tests.unit.segments.conftest import DAY, T0
from tests.unit.segments.test_rule_parser_properties import exprs

TYPES = sorted(EVENT_TYPES)


def _value(o: Any, features: dict[str, Any], state: Any, now: float) -> Any:
    if isinstance(o, Number | String):
        return o.value
    if isinstance(o, Feature):
        return features.get(o.name)
    if isinstance(o, Count):
        return windows.count(state, o.event, o.seconds, now)
    if o.name in EVENT_TYPES:
        return windows.age(state, o.name, now)
    t = features.get(o.name)
    return math.inf if not isinstance(t, int | float) or isinstance(t, bool) else float(now - t)


def _relaxed(c: Compare, threshold: Any, margin: float) -> Any:
    if margin and isinstance(c.right, Number) and not isinstance(c.left, Age):
        if c.op in (">", ">="):
            return threshold - margin
        if c.op in ("<", "<="):
            return threshold + margin
    return threshold


_ORDERINGS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


def _op(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    try:
        return bool(_ORDERINGS[op](left, right))
    except TypeError:  # an ordering of a string and a number is false, not an error
        return False


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def oracle_holds(e: Any, features: dict[str, Any], state: Any, now: float, margin: float,
                 values: dict[str, Any]) -> bool:
    if isinstance(e, Compare):
        sides = []
        for o in (e.left, e.right):
            v = _value(o, features, state, now)
            if not isinstance(o, Number | String):
                values[o.text] = None if isinstance(v, float) and not math.isfinite(v) else v
            sides.append(v)
        left, right = sides
        if left is None or right is None or _number(left) != _number(right):
            return False
        return _op(e.op, left, _relaxed(e, right, margin))
    results = [oracle_holds(i, features, state, now, margin, values) for i in e.items]
    return all(results) if isinstance(e, And) else any(results)


def oracle_times(e: Any, features: dict[str, Any], state: Any, now: float, margin: float) -> list[float]:
    if not isinstance(e, Compare):
        return [t for i in e.items for t in oracle_times(i, features, state, now, margin)]
    if isinstance(e.left, Count) and isinstance(e.right, Number):
        threshold = _relaxed(e, e.right.value, margin)
        n = windows.count(state, e.left.event, e.left.seconds, now)
        before = _op(e.op, n, threshold)
        for expiry, k in windows.expiries(state, e.left.event, e.left.seconds, now):
            n -= k
            if _op(e.op, n, threshold) != before:
                return [expiry]
        return []
    out = [t for o in (e.left, e.right) if isinstance(o, Count)
           if (t := windows.next_change_at(state, o.event, o.seconds, now)) is not None]
    if isinstance(e.left, Age) and isinstance(e.right, Number):
        last_age = _value(e.left, features, state, now)
        if math.isfinite(last_age):
            crossing = now - last_age + e.right.value
            out.append(crossing + EPSILON if e.op in (">", "<=") else crossing)
    return out


feature_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2000), st.text("ABCXYZ", max_size=3),
    st.floats(-1e3, 1e4, allow_nan=False).map(lambda x: round(x, 2)), st.just(math.inf),
)
profiles = st.fixed_dictionaries({}, optional={
    name: feature_values for name in
    ("monetary", "frequency", "lifetime.purchases", "affinity.books", "affinity.home-garden", "country")
})
window_events = st.lists(
    st.tuples(st.sampled_from(TYPES), st.floats(0, 60 * DAY, allow_nan=False).map(lambda x: T0 + round(x, 3))),
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(exprs, profiles, window_events, st.floats(0, 70 * DAY, allow_nan=False), st.sampled_from([0.0, 0.5, 1.0, 50.0]))
def test_a_compiled_condition_decides_records_and_schedules_as_the_language_defines(e, features, evs, later, margin):
    state = None
    for i, (event_type, ts) in enumerate(sorted(evs, key=lambda x: x[1])):
        state, _ = windows.apply(state, event_type, ts, i)
    now = T0 + later
    expected: dict[str, Any] = {}
    holds = oracle_holds(e, features, state, now, margin, expected)
    times = [t for t in oracle_times(e, features, state, now, margin) if t > now]

    node = _compile(e)
    env = _Env(features, state, now)
    assert node.holds(env, margin) == holds
    assert list(env.values.items()) == list(expected.items())  # the reason, in reading order
    assert node.earliest(env, margin, math.inf) == min(times, default=math.inf)
    assert node.earliest(env, margin, now + 1.0) == min([*times, now + 1.0])
