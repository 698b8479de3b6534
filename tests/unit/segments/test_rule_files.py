"""Rule files: the shipped defaults load; every kind of mistake is a ConfigError naming the rule and the problem."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.segments.known_features import FeatureRegistry, default_registry
from app.segments.rules import load_rules


def rule(when: str, extra: str = "", name: str = "r1") -> str:
    return f'[rules.{name}]\nwhen = "{when}"\n{extra}\n'


def test_the_default_rules_file_loads_with_the_six_documented_rules():
    rules = load_rules()
    assert rules.names() == [
        "highly_engaged", "cart_abandoner", "high_value_recent_buyer", "lapsed", "new_visitor", "interest",
    ]
    assert rules.rules[0].exit_margin == 1 and rules.rules[0].min_dwell == 3600
    assert rules.rules[-1].for_each == "affinity"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (rule("monetaryy > 3"), "rule 'r1': when: unknown feature 'monetaryy'"),
        (rule("count(product_veiw, 24h) > 3"), "rule 'r1': when: unknown event type 'product_veiw'"),
        (rule("count(product_view, 90m) > 3"), "rule 'r1': when: bad window 90m in count(product_view, 90m)"),
        (rule("count(product_view, 400d) > 3"), "rule 'r1': when: bad window 400d"),
        (rule("count(product_view, soon) > 3"), "rule 'r1': when: bad window: expected a duration"),
        (rule("monetary >> 3"), "rule 'r1': when: bad operator '>>'"),
        (rule("monetary => 3"), "rule 'r1': when: bad operator '=>'"),
        (rule("monetary > 'lots'"), "rule 'r1': when: bad threshold type in 'monetary > \"lots\"'"),
        (rule("country > 'GB'"), "rule 'r1': when: bad operator '>' in"),
        (rule("country == 3"), "rule 'r1': when: bad threshold type"),
        (rule("age(monetary) > 3d"), "rule 'r1': when: age() needs an event type or a timestamp feature"),
        (rule("3 < monetary"), "rule 'r1': when: the left side of a comparison must be"),
        (rule("monetary > 3 and"), "rule 'r1': when: expected an operand, found the end"),
        (rule("(monetary > 3"), "rule 'r1': when: expected ')', found the end"),
        (rule("monetary > 3", "exit_margin = -1"), "rule 'r1': exit_margin must be a number >= 0"),
        (rule("monetary > 3", 'exit_margin = "big"'), "rule 'r1': exit_margin must be a number >= 0"),
        (rule("monetary > 3", 'min_dwell = "an hour"'), "rule 'r1': bad duration 'an hour'"),
        (rule("monetary > 3", "colour = 1"), "rule 'r1': unknown keys ['colour']"),
        (rule("monetary > 3", 'stay_when = "monetary >"'), "rule 'r1': stay_when: expected an operand"),
        (rule("monetary > 3", "stay_when = 3"), "rule 'r1': 'stay_when' must be a condition string"),
        ("[rules.r1]\ndescription = 'x'\n", "rule 'r1': 'when' (a condition string) is required"),
        (rule("affinity.{key} > 0.3", 'for_each = "colour.*"\nsegment = "i:{key}"'),
         "rule 'r1': unknown feature family 'colour.*'"),
        (rule("affinity.books > 0.3", 'for_each = "affinity.*"'), "rule 'r1': a for_each rule needs {key}"),
        (rule("monetary > 3") + rule("monetary > 4", 'segment = "r1"', name="r2"),
         "rule 'r2': segment 'r1' is already produced by rule 'r1'"),
        ("[rules.r1\nwhen = 1", "not valid TOML"),
        ("version = 2\n" + rule("monetary > 3"), "unsupported version 2"),
        ("version = 1\n", "no [rules.<name>] tables"),
        ("colour = 1\n" + rule("monetary > 3"), "unknown top-level keys ['colour']"),
    ],
)
def test_a_bad_rules_file_raises_a_config_error_naming_the_rule_and_the_problem(text, expected):
    with pytest.raises(ConfigError) as info:
        load_rules(text)
    assert expected in str(info.value)
    assert str(info.value).startswith("segment rules <rules>")


def test_a_missing_file_is_a_config_error_not_a_traceback(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="cannot read"):  # found by tests/reliability: a NUL in a one-line source
        load_rules("rules\x00.toml")


def test_a_rules_file_on_disk_is_named_in_the_error(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(rule("frequency > 1", name="loyal"), encoding="utf-8")
    assert load_rules(path).names() == ["loyal"]
    path.write_text(rule("frequncy > 1", name="loyal"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rules\.toml: rule 'loyal': when: unknown feature 'frequncy'"):
        load_rules(path)


def test_features_registered_later_become_usable_in_rules():
    registry: FeatureRegistry = default_registry()
    with pytest.raises(ConfigError, match="unknown feature 'sessions_30d'"):
        load_rules(rule("sessions_30d > 4"), registry=registry)
    registry.register("sessions_30d", "number", "sessions in 30 days")
    assert load_rules(rule("sessions_30d > 4"), registry=registry).names() == ["r1"]
