"""Guards against over-merging: per-type limits, junk values, shared devices, contradicted ids."""

from __future__ import annotations

from app.identity import IdentityResolver, IdentityState, ResolverConfig

from .conftest import SECRET, crm, event


def _refusals(changes: list[dict]) -> list[str]:
    return [c["evidence"][0]["rule"] for c in changes if c["change"] == "refused"]


def test_second_user_id_refuses_the_merge_and_reports_it(resolver: IdentityResolver, state: IdentityState) -> None:
    a = resolver.resolve_crm(state, crm("1", email="shared@example.com", user_id="u-1"))
    b = resolver.resolve_crm(state, crm("2", email="shared@example.com", user_id="u-2"))
    assert a.profile_id != b.profile_id
    refused = [c for c in b.changes if c["change"] == "refused"]
    assert refused[0]["evidence"][0]["rule"] == "refused:limit:user_id"
    assert refused[0]["absorbed_profile_ids"] == [a.profile_id]
    assert refused[0]["profile_id"] == b.profile_id
    # the e-mail stays with its first owner
    assert resolver.profile_of(state, resolver.identifier_hash("email", "shared@example.com")) == a.profile_id


def test_configured_email_limit_refuses_a_third_address(state: IdentityState) -> None:
    resolver = IdentityResolver(SECRET, config=ResolverConfig.from_dict({"limits": {"email": 2}}))
    p = resolver.resolve_crm(state, crm("1", email="a@example.com", phone="07911 123456")).profile_id
    resolver.resolve_crm(state, crm("2", email="b@example.com", phone="07911 123456"))
    third = resolver.resolve_crm(state, crm("3", email="c@example.com", phone="07911 123456"))
    assert third.profile_id != p
    assert "refused:limit:email" in _refusals(third.changes)


def test_junk_values_never_link_and_are_reported(resolver: IdentityResolver, state: IdentityState) -> None:
    a = resolver.resolve_crm(state, crm("1", email="test@test.com", phone="0000000000", first_name="x"))
    b = resolver.resolve_crm(state, crm("2", email="TEST@test.com"))
    assert a.profile_id != b.profile_id
    assert _refusals(b.changes) == ["refused:blocklisted"]
    assert b.changes[0]["evidence"][0]["identifier_type"] == "email"
    c = resolver.resolve_crm(state, crm("3", email="unknown"))
    assert c.profile_id not in (a.profile_id, b.profile_id)


def test_configured_blocklist_values_are_junk(state: IdentityState) -> None:
    resolver = IdentityResolver(
        SECRET, config=ResolverConfig.from_dict({"blocklist": {"email": ["orders@shop.example"]}})
    )
    a = resolver.resolve_crm(state, crm("1", email="orders@shop.example"))
    b = resolver.resolve_crm(state, crm("2", email="orders@shop.example"))
    assert a.profile_id != b.profile_id


def test_device_seen_with_two_users_stops_linking(resolver: IdentityResolver, state: IdentityState) -> None:
    first = resolver.resolve_event(state, event("e1", "cookie-a", user_id="u-1", device="ipad-1"))
    second = resolver.resolve_event(state, event("e2", "cookie-b", user_id="u-2", device="ipad-1"))
    assert second.profile_id != first.profile_id
    assert "refused:shared_device" in _refusals(second.changes)
    entry = state.identifiers.get(resolver.identifier_hash("device_id", "ipad-1"))
    assert entry["shared"] is True
    # a new cookie on the shared device no longer joins anyone through it
    third = resolver.resolve_event(state, event("e3", "cookie-c", device="ipad-1"))
    assert third.profile_id not in (first.profile_id, second.profile_id)
    # the shared device is reported once, not on every event
    fourth = resolver.resolve_event(state, event("e4", "cookie-d", user_id="u-3", device="ipad-1"))
    assert "refused:shared_device" not in _refusals(fourth.changes)


def test_loyalty_id_match_contradicted_by_every_other_field_does_not_link(
    resolver: IdentityResolver, state: IdentityState
) -> None:
    ann = {
        "first_name": "Ann",
        "last_name": "Lee",
        "date_of_birth": "1980-01-02",
        "street": "12 High Street",
        "postcode": "2000",
        "city": "Springfield",
    }
    bob = {
        "first_name": "Robert",
        "last_name": "Okafor",
        "date_of_birth": "1949-12-25",
        "street": "7 Mill Road",
        "postcode": "6100",
        "city": "Perth",
    }
    a = resolver.resolve_crm(state, crm("1", loyalty_id="99887766", **ann))
    b = resolver.resolve_crm(state, crm("2", loyalty_id="99887766", **bob))
    assert a.profile_id != b.profile_id
    assert "refused:contradicted" in _refusals(b.changes)
    # with nothing to contradict it, the loyalty id links at once
    c = resolver.resolve_crm(state, crm("3", loyalty_id="99887766"))
    assert c.profile_id in (a.profile_id, b.profile_id)
