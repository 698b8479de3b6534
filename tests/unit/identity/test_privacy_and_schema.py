"""No clear identifier reaches state or outputs, and every output matches identity-changes.v1."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson

from app.identity import IdentityResolver, IdentityState, JsonCopyStore

from .conftest import crm, event

ROOT = Path(__file__).resolve().parents[3]
RAW = [
    "ann.lee@example.com",
    "annlee@example.com",
    "+447911123456",
    "7911123456",
    "07911 123456",
    "LOY-99887766",
    "LOY99887766",
    "user-ann-42",
    "cookie-ann-77",
    "ipad-ann-3",
    "shop-rec-555",
]


def _run(resolver: IdentityResolver, state: IdentityState) -> list[dict]:
    traits = {
        "first_name": "Ann",
        "last_name": "Lee",
        "date_of_birth": "1980-01-02",
        "postcode": "2000",
        "street": "12 High Street",
    }
    changes = []
    for res in (
        resolver.resolve_crm(
            state,
            crm("shop-rec-555", email="Ann.Lee@example.com", phone="07911 123456", loyalty_id="LOY-99887766", **traits),
        ),
        resolver.resolve_event(state, event("e1", "cookie-ann-77", device="ipad-ann-3")),
        resolver.resolve_event(
            state,
            event("e2", "cookie-ann-77", user_id="user-ann-42", traits={"email": "ann.lee@example.com", **traits}),
        ),
        resolver.resolve_crm(state, crm("9", user_id="someone-else", email="ann.lee@example.com")),
        resolver.resolve_crm(state, crm("10", loyalty_id="LOY-99887767", **traits)),
    ):
        changes.extend(res.changes)
    changes.extend(resolver.erase_identifier(state, resolver.identifier_hash("phone", "+447911123456")))
    return changes


def test_no_clear_identifier_in_state_or_outputs(resolver: IdentityResolver) -> None:
    state = IdentityState.json_copies()
    changes = _run(resolver, state)
    assert {c["change"] for c in changes} >= {"merged", "refused"}
    blobs = [orjson.dumps(changes).decode()]
    for store in (state.identifiers, state.profiles, state.members, state.blocks):
        assert isinstance(store, JsonCopyStore)
        blobs.extend(key + raw.decode() for key, raw in store.raw_items())
    text = "\n".join(blobs).lower()
    for raw in RAW:
        assert raw.lower() not in text, raw


def test_outputs_match_the_identity_changes_schema(resolver: IdentityResolver) -> None:
    schema = json.loads((ROOT / "schemas" / "identity-changes.v1.json").read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    changes = _run(resolver, IdentityState.in_memory())
    assert changes
    for change in changes:
        validator.validate(change)


def test_change_ids_are_deterministic(resolver: IdentityResolver) -> None:
    first = [c["change_id"] for c in _run(resolver, IdentityState.in_memory())]
    second = [c["change_id"] for c in _run(resolver, IdentityState.in_memory())]
    assert first == second and len(set(first)) == len(first)
