"""Deterministic and probabilistic linking, possible matches, and the evidence of merges."""

from __future__ import annotations

from app.identity import IdentityResolver, IdentityState, MatchModel
from app.identity.model import weight_probability

from .conftest import SECRET, crm, event

ANN = {
    "first_name": "Ann",
    "last_name": "Lee",
    "date_of_birth": "1980-01-02",
    "street": "12 High Street",
    "city": "Springfield",
    "postcode": "2000",
    "state": "nsw",
}


def test_same_email_links_crm_records_at_once(resolver: IdentityResolver, state: IdentityState) -> None:
    a = resolver.resolve_crm(state, crm("1", email="ann@example.com"))
    b = resolver.resolve_crm(state, crm("2", source="pos", email=" ANN@example.com"))
    assert a.created and not b.created
    assert a.profile_id == b.profile_id


def test_same_phone_and_loyalty_id_link(resolver: IdentityResolver, state: IdentityState) -> None:
    a = resolver.resolve_crm(state, crm("1", phone="07911 123456"))
    b = resolver.resolve_crm(state, crm("2", phone="+44 7911 123456"))
    c = resolver.resolve_crm(state, crm("3", loyalty_id="LOY-8841-2297"))
    d = resolver.resolve_crm(state, crm("4", loyalty_id="loy 8841 2297"))
    assert a.profile_id == b.profile_id
    assert c.profile_id == d.profile_id != a.profile_id


def test_identifier_type_is_part_of_the_hash(resolver: IdentityResolver, state: IdentityState) -> None:
    a = resolver.resolve_crm(state, crm("1", email="ann@example.com"))
    b = resolver.resolve_crm(state, crm("2", user_id="ann@example.com"))
    assert a.profile_id != b.profile_id


def test_login_stitches_anonymous_history_and_merge_keeps_smallest_id(
    resolver: IdentityResolver, state: IdentityState
) -> None:
    anon = resolver.resolve_event(state, event("e1", "cookie-1"))
    known = resolver.resolve_crm(state, crm("c1", email="ann@example.com", user_id="u-1"))
    login = resolver.resolve_event(state, event("e2", "cookie-1", user_id="u-1"))
    assert login.profile_id == min(anon.profile_id, known.profile_id)
    assert login.absorbed == (max(anon.profile_id, known.profile_id),)
    merged = [c for c in login.changes if c["change"] == "merged"]
    assert len(merged) == 1
    assert merged[0]["absorbed_profile_ids"] == [max(anon.profile_id, known.profile_id)]
    rules = {(e["rule"], e.get("identifier_type")) for e in merged[0]["evidence"]}
    assert ("deterministic", "user_id") in rules
    assert ("deterministic", "anonymous_id") in rules
    # later page views of the cookie resolve to the survivor
    assert resolver.resolve_event(state, event("e3", "cookie-1")).profile_id == login.profile_id


def test_fuzzy_match_above_threshold_merges_with_field_evidence(state: IdentityState) -> None:
    resolver = IdentityResolver(SECRET)
    a = resolver.resolve_crm(state, crm("1", **ANN))
    typo = {**ANN, "first_name": "Anne", "street": "12 Hihg Street"}
    b = resolver.resolve_crm(state, crm("2", source="pos", **typo))
    assert b.profile_id == a.profile_id
    # a third record bridging two fuzzy-linked profiles emits `merged` with per-field evidence
    zed = {
        "first_name": "Zed",
        "last_name": "Ray",
        "date_of_birth": "1971-03-04",
        "street": "5 Mill Road",
        "postcode": "3999",
    }
    c = resolver.resolve_crm(state, crm("3", email="zed@example.com", **zed))
    assert c.profile_id != a.profile_id
    bridge = resolver.resolve_crm(state, crm("4", email="zed@example.com", **ANN))
    merged = [x for x in bridge.changes if x["change"] == "merged"]
    assert merged and bridge.profile_id == min(a.profile_id, c.profile_id)
    fields = {e.get("field") for e in merged[0]["evidence"] if e["rule"] == "probabilistic"}
    assert {"first_name", "last_name", "date_of_birth", "match_weight"} <= fields
    assert all("weight" in e for e in merged[0]["evidence"] if e["rule"] == "probabilistic")


def test_different_people_sharing_a_block_do_not_merge(resolver: IdentityResolver, state: IdentityState) -> None:
    a = resolver.resolve_crm(state, crm("1", **ANN))
    other = {
        "first_name": "Bob",
        "last_name": "Lee",
        "date_of_birth": "1980-11-30",
        "street": "3 Mill Road",
        "city": "Shelbyville",
        "postcode": "3999",
    }
    b = resolver.resolve_crm(state, crm("2", **other))
    assert a.profile_id != b.profile_id
    assert not [c for c in b.changes if c["change"] in ("merged", "possible_match")]


def _pair_probability(resolver: IdentityResolver, x: dict[str, str], y: dict[str, str]) -> float:
    ox, oy = resolver.observe_crm(crm("x", **x)), resolver.observe_crm(crm("y", **y))
    return weight_probability(resolver.model.match_weight(ox.traits, oy.traits))


def test_between_thresholds_emits_possible_match_and_does_not_merge(state: IdentityState) -> None:
    weak = {"first_name": "Ann", "last_name": "Lee", "postcode": "2000"}
    base = IdentityResolver(SECRET)
    p = _pair_probability(base, ANN, weak)
    model = MatchModel.default()
    model = MatchModel(
        model.m, model.u, model.prior, merge_probability=min(0.999999, p * 1.5 + 0.5), review_probability=p / 2
    )
    assert model.review_probability < p < model.merge_probability
    resolver = IdentityResolver(SECRET, model)
    a = resolver.resolve_crm(state, crm("1", **ANN))
    b = resolver.resolve_crm(state, crm("2", **weak))
    assert a.profile_id != b.profile_id
    possible = [c for c in b.changes if c["change"] == "possible_match"]
    assert len(possible) == 1
    assert possible[0]["profile_id"] == b.profile_id
    assert possible[0]["absorbed_profile_ids"] == [a.profile_id]
    assert any(e.get("field") == "match_weight" for e in possible[0]["evidence"])
    assert not [c for c in b.changes if c["change"] == "merged"]


def test_below_review_threshold_is_silent(resolver: IdentityResolver, state: IdentityState) -> None:
    resolver.resolve_crm(state, crm("1", **ANN))
    far = {"first_name": "Zed", "last_name": "Lee", "postcode": "2000", "date_of_birth": "1999-09-09"}
    res = resolver.resolve_crm(state, crm("2", **far))
    assert res.created and res.changes == []


def test_resending_a_record_updates_it_in_place(resolver: IdentityResolver, state: IdentityState) -> None:
    a = resolver.resolve_crm(state, crm("1", **ANN))
    again = resolver.resolve_crm(state, crm("1", **{**ANN, "street": "99 New Road"}))
    assert again.profile_id == a.profile_id and not again.created
    assert state.members.get(resolver.crm_record_hash("crm", "1"))["street"] == "99 new road"
