"""Each default rule, driven by scripted events and by timers alone, gives the expected segment changes."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft7Validator

from app.segments.membership import iso
from tests.unit.segments.conftest import DAY, HOUR, MIN, T0, Script, summary

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "segment-changes.v1.json").read_text())
VALIDATOR = Draft7Validator(SCHEMA, format_checker=Draft7Validator.FORMAT_CHECKER)

# A customer with history and no recent purchase: only the rule under test can fire.
QUIET = {"lifetime__purchases": 1, "monetary": 0.0, "first_seen": T0 - 365 * DAY, "last_purchase_at": T0 - 10 * DAY}


def test_highly_engaged_enters_on_the_fourth_view_in_24h_and_exits_by_timer_when_views_age_out(script: Script):
    for i in range(3):
        assert script.event("product_view", T0 + i * MIN, **QUIET) == []
    changes = script.event("product_view", T0 + 3 * MIN)
    assert summary(changes) == [("entered", "highly_engaged")]
    assert changes[0]["reason"] == {"rule": "highly_engaged", "features": {"count(product_view, 24h)": 4}}
    # No event: the hourly bucket of the four views leaves the 24 h window at 01:00 the next day.
    assert script.advance(T0 + DAY + HOUR - 1) == []
    exits = script.advance(T0 + 2 * DAY)
    assert summary(exits) == [("exited", "highly_engaged")]
    assert exits[0]["at"] == iso(T0 + DAY + HOUR)


def test_cart_abandoner_is_fired_by_timer_30_minutes_after_the_add_and_leaves_on_purchase(script: Script):
    assert script.event("add_to_cart", T0, **QUIET) == []
    assert script.advance(T0 + 29 * MIN) == []
    entered = script.advance(T0 + 2 * HOUR)
    assert summary(entered) == [("entered", "cart_abandoner")]
    assert entered[0]["at"] == iso(T0 + 30 * MIN)
    assert entered[0]["reason"]["features"]["age(add_to_cart)"] == 30 * MIN
    assert entered[0]["reason"]["features"]["age(purchase)"] is None  # never purchased: infinite age
    exited = script.event("purchase", T0 + 3 * HOUR, last_purchase_at=T0 + 3 * HOUR)
    assert ("exited", "cart_abandoner") in summary(exited)


def test_cart_abandoner_does_not_fire_when_the_purchase_follows_within_30_minutes(script: Script):
    script.event("add_to_cart", T0, **QUIET)
    script.event("purchase", T0 + 10 * MIN, last_purchase_at=T0 + 10 * MIN)
    script.advance(T0 + 3 * DAY)
    assert "cart_abandoner" not in {c["segment_id"] for c in script.changes}


def test_high_value_recent_buyer_enters_on_purchase_and_exits_by_timer_after_30_days(script: Script):
    changes = script.event("purchase", T0, lifetime__purchases=3, monetary=650.0, last_purchase_at=T0,
                           first_seen=T0 - 400 * DAY)
    assert summary(changes) == [("entered", "high_value_recent_buyer")]
    assert changes[0]["reason"]["features"] == {"monetary": 650.0, "age(last_purchase_at)": 0.0}
    assert script.advance(T0 + 30 * DAY) == []  # age <= 30d still holds at exactly 30 days
    exits = script.advance(T0 + 31 * DAY)
    assert summary(exits) == [("exited", "high_value_recent_buyer")]
    assert exits[0]["at"] == iso(T0 + 30 * DAY + 0.001)


def test_lapsed_is_entered_by_timer_60_days_after_the_last_purchase_and_left_on_a_new_purchase(script: Script):
    script.event("page_view", T0, lifetime__purchases=2, monetary=0.0, last_purchase_at=T0,
                 first_seen=T0 - 400 * DAY)
    assert "lapsed" not in script.members()
    assert script.advance(T0 + 60 * DAY) == []
    entered = script.advance(T0 + 61 * DAY)
    assert summary(entered) == [("entered", "lapsed")]
    assert entered[0]["at"] == iso(T0 + 60 * DAY + 0.001)
    back = script.event("purchase", T0 + 70 * DAY, lifetime__purchases=3, last_purchase_at=T0 + 70 * DAY)
    assert ("exited", "lapsed") in summary(back)


def test_new_visitor_enters_on_first_visit_and_exits_by_timer_after_7_days(script: Script):
    entered = script.event("page_view", T0, first_seen=T0, lifetime__purchases=0, monetary=0.0)
    assert summary(entered) == [("entered", "new_visitor")]
    exits = script.advance(T0 + 8 * DAY)
    assert summary(exits) == [("exited", "new_visitor")]
    assert exits[0]["at"] == iso(T0 + 7 * DAY)


def test_interest_segments_follow_category_affinities_with_margin_and_a_day_of_dwell(script: Script):
    entered = script.event("product_view", T0, **QUIET, affinity__books=0.4, affinity__toys=0.1)
    assert summary(entered) == [("entered", "interest:books")]
    assert script.event("product_view", T0 + HOUR, affinity__books=0.22) == []  # within the 0.1 margin
    # Below the margin but within the day of minimum dwell: held; toys crosses 0.3 and enters.
    assert summary(script.event("product_view", T0 + 2 * HOUR, affinity__books=0.15, affinity__toys=0.35)) == [
        ("entered", "interest:toys")
    ]
    assert script.changes[-1]["reason"]["features"] == {"affinity.toys": 0.35}
    exits = script.advance(T0 + 2 * DAY)  # the dwell ends by timer, 24 h after entering
    assert summary(exits) == [("exited", "interest:books")]
    assert exits[0]["at"] == iso(T0 + DAY)


def test_an_event_that_changes_no_membership_emits_nothing(script: Script):
    script.event("page_view", T0, first_seen=T0, lifetime__purchases=0, monetary=0.0)
    assert script.event("page_view", T0 + MIN) == []
    assert script.event("search", T0 + 2 * MIN) == []


def test_changes_validate_against_the_segment_changes_schema_and_ids_are_stable(default_rules):
    runs = []
    for _ in range(2):
        s = Script(default_rules)
        s.event("add_to_cart", T0, first_seen=T0, lifetime__purchases=0, monetary=0.0)
        for i in range(4):
            s.event("product_view", T0 + i * MIN)
        s.advance(T0 + 9 * DAY)
        runs.append(s.changes)
    assert runs[0] == runs[1]
    assert {c["segment_id"] for c in runs[0]} == {"new_visitor", "cart_abandoner", "highly_engaged"}
    for c in runs[0]:
        errors = list(VALIDATOR.iter_errors(c))
        assert errors == [], errors
    assert len({c["change_id"] for c in runs[0]}) == len(runs[0])


def test_a_cart_abandoner_adding_more_to_the_cart_stays_in_until_a_purchase(script: Script):
    script.event("add_to_cart", T0, **QUIET)
    assert summary(script.advance(T0 + HOUR)) == [("entered", "cart_abandoner")]
    assert script.event("add_to_cart", T0 + 2 * HOUR) == []  # held by stay_when, not restarted
    assert script.advance(T0 + 3 * HOUR) == []
    assert summary(script.advance(T0 + 8 * DAY)) == [("exited", "cart_abandoner")]  # 7 days after the last add
