"""Property tests of the condition language: canonical text round-trips; any text parses or gives a ConfigError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ConfigError
from app.segments.known_features import EVENT_TYPES
from app.segments.rules import (
    Age,
    And,
    Compare,
    Count,
    Feature,
    Number,
    Or,
    String,
    load_rules,
    parse,
    render,
)

names = st.sampled_from(["monetary", "frequency", "lifetime.purchases", "affinity.books", "affinity.home-garden"])
events = st.sampled_from(sorted(EVENT_TYPES))
windows = st.sampled_from([3600.0, 7200.0, 86400.0, 2 * 86400.0, 30 * 86400.0, 90 * 86400.0])
numbers = st.one_of(
    st.integers(-10**6, 10**6).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 3)),
).map(lambda x: Number(x))
durations = st.integers(1, 10**7).map(lambda s: Number(float(s), duration=True))
lefts = st.one_of(names.map(Feature), st.builds(Count, events, windows), events.map(Age))
rights = st.one_of(numbers, durations, lefts)
ops = st.sampled_from([">", ">=", "<", "<=", "==", "!="])
compares = st.builds(Compare, lefts, ops, rights)
strings = st.builds(Compare, st.just(Feature("country")), st.sampled_from(["==", "!="]),
                    st.text("ABCXYZ ", max_size=4).map(String))


exprs = st.recursive(
    st.one_of(compares, strings),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(exprs)
def test_rendered_conditions_parse_back_to_the_same_tree(e):
    assert parse(render(e)) == e
    assert render(parse(render(e))) == render(e)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcount()_.,<>=!'\" 0123456789dhmsandor-")), max_size=40))
def test_any_text_parses_or_raises_a_config_error_and_nothing_else(text):
    try:
        parse(text)
    except ConfigError as exc:
        assert str(exc)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_any_when_string_in_a_rules_file_loads_or_raises_a_config_error(text):
    try:
        load_rules({"rules": {"r": {"when": text}}})
    except ConfigError as exc:
        assert "rule 'r'" in str(exc)


values = st.one_of(
    st.text(max_size=30), st.integers(-5, 5), st.floats(allow_nan=True), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["count(search, 24h) > 1", "affinity.{key} > 0.2", "affinity.*", "1h", "-1", "interest:{key}"]),
)
rule_keys = st.sampled_from(
    ["when", "stay_when", "segment", "for_each", "exit_margin", "min_dwell", "description", "x"]
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["r", "r-2", "bad name"]),
                       st.one_of(values, st.dictionaries(rule_keys, values, max_size=5)), max_size=3),
       st.one_of(st.none(), st.dictionaries(st.sampled_from(["exit_margin", "min_dwell", "y"]), values, max_size=2)))
def test_any_rules_document_loads_or_raises_a_config_error_and_nothing_else(rules, defaults):
    doc: dict = {"rules": rules}
    if defaults is not None:
        doc["defaults"] = defaults
    try:
        loaded = load_rules(doc)
    except ConfigError as exc:
        assert str(exc).startswith("segment rules <rules>")
    else:
        assert loaded.names() == list(rules)
