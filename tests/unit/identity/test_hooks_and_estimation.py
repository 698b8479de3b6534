"""The merge-hook contract applied to a table, and weight estimation from data and labels."""

from __future__ import annotations

from collections.abc import Sequence

from app.identity import (
    IdentityResolver,
    IdentityState,
    KeepOnSplit,
    MatchModel,
    MergeHook,
    apply_change,
    apply_erasure,
)
from app.identity.estimate import estimate, estimate_from_labels

from .conftest import crm, event, population


class Segments(KeepOnSplit[dict]):
    def merge(self, surviving: dict, absorbed: dict) -> dict:
        return {"segments": sorted(set(surviving["segments"]) | set(absorbed["segments"]))}

    def split(self, state: dict, profile_id: str, new_profile_ids: Sequence[str]) -> dict[str, dict]:
        return {p: state for p in new_profile_ids}


def test_merge_and_split_changes_drive_a_profile_keyed_table(resolver: IdentityResolver, state: IdentityState) -> None:
    hook: MergeHook[dict] = Segments()
    assert isinstance(hook, MergeHook)
    a = resolver.resolve_event(state, event("e1", "cookie-1"))
    b = resolver.resolve_crm(state, crm("c1", user_id="u-1"))
    table = {a.profile_id: {"segments": ["browsers"]}, b.profile_id: {"segments": ["vip"]}}
    login = resolver.resolve_event(state, event("e2", "cookie-1", user_id="u-1"))
    for change in login.changes:
        apply_change(table, hook, change)
    assert table == {login.profile_id: {"segments": ["browsers", "vip"]}}
    cookie = resolver.identifier_hash("anonymous_id", "cookie-1")
    user = resolver.identifier_hash("user_id", "u-1")
    for change in resolver.withdraw_evidence(state, login.profile_id, [(cookie, user)]):
        apply_change(table, hook, change)
    assert len(table) == 2
    for pid in list(table):
        apply_erasure(table, hook, pid)
    assert table == {}


def test_em_learns_that_agreement_is_evidence_and_estimates_the_prior() -> None:
    people = population(seed=9, people=300)
    model = estimate([IdentityResolver("unit-test-secret-0123456789").observe_crm(r).traits for _, r in people])
    for field in ("first_name", "last_name", "date_of_birth", "postcode", "loyalty_id"):
        assert model.weights[field][0] > 3, field
        assert model.weights[field][-1] < 0, field
    n = len(people)
    sizes: dict[int, int] = {}
    for person, _ in people:
        sizes[person] = sizes.get(person, 0) + 1
    true_pairs = sum(s * (s - 1) // 2 for s in sizes.values())
    estimated = model.prior * n * (n - 1) / 2
    assert 0.5 * true_pairs < estimated < 2 * true_pairs
    assert model.meta["method"] == "em"
    assert MatchModel.from_dict(model.to_dict()).weights == model.weights


def test_labelled_pairs_set_m_from_true_matches() -> None:
    traits = {
        "1": {"last_name": "lee"},
        "2": {"last_name": "lee"},
        "3": {"last_name": "leigh"},
        "4": {"last_name": "fox"},
    }
    labelled = [("1", "2", True), ("1", "3", True), ("1", "4", False), ("9", "1", True)]
    model = estimate_from_labels(traits, labelled)
    m = model.m["last_name"]
    assert abs(m[0] - 0.5) < 0.01 and max(m[1:]) > 0.45
    assert model.meta == {"method": "labels", "matches": 2, "non_matches": 1}
