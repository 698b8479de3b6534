"""Hysteresis: a profile on a rule's boundary does not flap in and out."""

from __future__ import annotations

from app.segments.rules import load_rules
from tests.unit.segments.conftest import MIN, T0, Script, summary

OSCILLATING = [4, 3, 4, 3, 4, 3, 4, 3]


def run(rules_text: str, values: list[float], step: float = 10 * MIN) -> Script:
    s = Script(load_rules(rules_text))
    for i, v in enumerate(values):
        s.event("page_view", T0 + i * step, frequency=v)
    return s


def test_without_hysteresis_a_value_oscillating_on_the_threshold_flaps_every_time():
    s = run('[rules.loyal]\nwhen = "frequency > 3"\n', OSCILLATING)
    assert len(s.changes) == len(OSCILLATING)


def test_an_exit_margin_keeps_a_member_in_until_the_value_falls_below_threshold_minus_margin():
    s = run('[rules.loyal]\nwhen = "frequency > 3"\nexit_margin = 1\n', [*OSCILLATING, 2.5, 3, 2])
    assert summary(s.changes) == [("entered", "loyal"), ("exited", "loyal")]
    assert s.changes[1]["reason"] == {"rule": "loyal", "features": {"frequency": 2}}


def test_a_minimum_dwell_holds_a_member_in_and_a_timer_releases_it_when_it_ends():
    s = run('[rules.loyal]\nwhen = "frequency > 3"\nmin_dwell = "1h"\n', OSCILLATING, step=5 * MIN)
    assert summary(s.changes) == [("entered", "loyal")]  # 35 minutes of oscillation, one change
    exits = s.advance(T0 + 2 * 3600)
    assert summary(exits) == [("exited", "loyal")]
    assert exits[0]["at"].startswith("2024-06-14T01:00:00")


def hover(rules) -> Script:
    """One product view every 7 h: the 24 h count alternates between 4 (after a view) and 3."""
    s = Script(rules)
    for i in range(20):
        s.event("product_view", T0 + i * 7 * 3600, lifetime__purchases=1, monetary=0.0,
                first_seen=T0 - 400 * 86400, last_purchase_at=T0 - 86400)
        s.advance(T0 + (i + 1) * 7 * 3600 - 1)
    return s


def test_the_windowed_count_rule_does_not_flap_while_views_hover_between_three_and_four(default_rules):
    bare = hover(load_rules('[rules.highly_engaged]\nwhen = "count(product_view, 24h) > 3"\n'))
    assert len(bare.changes) > 20  # without hysteresis: in and out on every view
    s = hover(default_rules)
    assert summary(s.changes) == [("entered", "highly_engaged")]
