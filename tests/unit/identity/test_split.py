"""Withdrawing evidence recomputes components: erasure, operator splits, profile erasure."""

from __future__ import annotations

from app.identity import IdentityResolver, IdentityState

from .conftest import crm, event


def test_erasing_the_only_shared_identifier_splits_the_profile(
    resolver: IdentityResolver, state: IdentityState
) -> None:
    a = resolver.resolve_crm(state, crm("1", email="ann@example.com", phone="07911 123456"))
    b = resolver.resolve_crm(state, crm("2", email="ann@example.com", loyalty_id="LX-44"))
    assert a.profile_id == b.profile_id
    changes = resolver.erase_identifier(
        state, resolver.identifier_hash("email", "ann@example.com"), at="2024-06-01T00:00:00Z"
    )
    assert [c["change"] for c in changes] == ["split"]
    new_ids = changes[0]["new_profile_ids"]
    assert len(new_ids) == 2 and a.profile_id in new_ids
    one = resolver.profile_of(state, resolver.crm_record_hash("crm", "1"))
    two = resolver.profile_of(state, resolver.crm_record_hash("crm", "2"))
    assert {one, two} == set(new_ids)
    assert changes[0]["evidence"][0]["rule"] == "erased"
    assert resolver.identifier_hash("email", "ann@example.com") not in state.identifiers


def test_erasing_a_redundant_identifier_keeps_the_profile_whole(
    resolver: IdentityResolver, state: IdentityState
) -> None:
    a = resolver.resolve_crm(state, crm("1", email="ann@example.com", phone="07911 123456"))
    resolver.resolve_crm(state, crm("2", email="ann@example.com", phone="07911 123456"))
    changes = resolver.erase_identifier(state, resolver.identifier_hash("phone", "+447911123456"))
    assert changes == []
    assert resolver.profile_of(state, resolver.crm_record_hash("crm", "2")) == a.profile_id


def test_operator_split_withdraws_an_edge(resolver: IdentityResolver, state: IdentityState) -> None:
    resolver.resolve_event(state, event("e1", "cookie-1", user_id="u-1"))
    res = resolver.resolve_event(state, event("e2", "cookie-2", user_id="u-1"))
    user = resolver.identifier_hash("user_id", "u-1")
    cookie2 = resolver.identifier_hash("anonymous_id", "cookie-2")
    changes = resolver.withdraw_evidence(state, res.profile_id, [(cookie2, user)])
    assert changes[0]["change"] == "split"
    assert resolver.profile_of(state, cookie2) != resolver.profile_of(state, user)
    assert res.profile_id in changes[0]["new_profile_ids"]


def test_erasing_a_probabilistic_member_recomputes_from_the_fuzzy_edges(
    resolver: IdentityResolver, state: IdentityState
) -> None:
    ann = {
        "first_name": "Ann",
        "last_name": "Lee",
        "date_of_birth": "1980-01-02",
        "street": "12 High Street",
        "postcode": "2000",
    }
    a = resolver.resolve_crm(state, crm("1", **ann))
    b = resolver.resolve_crm(state, crm("2", email="ann@example.com", **{**ann, "first_name": "Anne"}))
    c = resolver.resolve_crm(state, crm("3", email="ann@example.com"))
    assert a.profile_id == b.profile_id == c.profile_id
    changes = resolver.erase_identifier(state, resolver.crm_record_hash("crm", "2"))
    # record 2 carried both the fuzzy edge to 1 and the e-mail shared with 3
    assert changes and changes[0]["change"] == "split"
    p1 = resolver.profile_of(state, resolver.crm_record_hash("crm", "1"))
    p3 = resolver.profile_of(state, resolver.crm_record_hash("crm", "3"))
    assert p1 != p3
    assert state.members.get(resolver.crm_record_hash("crm", "2")) is None


def test_erase_profile_removes_every_trace(resolver: IdentityResolver) -> None:
    state = IdentityState.in_memory()
    ann = {"first_name": "Ann", "last_name": "Lee", "date_of_birth": "1980-01-02", "postcode": "2000"}
    res = resolver.resolve_crm(state, crm("1", email="ann@example.com", **ann))
    hashes = resolver.erase_profile(state, res.profile_id)
    assert resolver.identifier_hash("email", "ann@example.com") in hashes
    assert state.profiles == {} and state.identifiers == {}
    assert state.members == {} and state.blocks == {}
