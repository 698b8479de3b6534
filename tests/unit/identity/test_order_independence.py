"""Same clusters whether records go through one resolver call sequence or a hash-split stream.

What is guaranteed: the final clustering is the connected components of the
pairwise links (shared identifiers, and fuzzy pairs above the merge threshold
that share a blocking key), because every new record is compared with every
earlier member of its blocks and merges *all* profiles it links to. That does
not depend on the order, as long as no guard acts (a limit refusal, a shared
device, a contradiction, a saturated block): those are decided by what was seen
first. Surviving profile ids are the smallest id of the merged profiles.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from app.identity import IdentityResolver, IdentityState

from .conftest import crm, population


def _clusters(resolver: IdentityResolver, state: IdentityState, records: list[dict[str, Any]]) -> set:
    groups: dict[str, set[str]] = defaultdict(set)
    for r in records:
        groups[resolver.profile_of(state, resolver.crm_record_hash(r["source"], r["record_id"]))].add(r["record_id"])
    return {frozenset(g) for g in groups.values()}


def _partition(record: dict[str, Any], parts: int) -> int:
    return hashlib.sha256(record["record_id"].encode()).digest()[0] % parts


def _hash_split(resolver: IdentityResolver, records: list[dict[str, Any]], parts: int) -> set:
    state = IdentityState.in_memory()
    for p in range(parts):  # partition by partition: a different global order
        for r in records:
            if _partition(r, parts) == p:
                resolver.resolve_crm(state, r)
    return _clusters(resolver, state, records)


def test_fuzzy_population_clusters_do_not_depend_on_partitioning(resolver: IdentityResolver) -> None:
    records = [r for _, r in population(seed=11, people=60)]
    state = IdentityState.in_memory()
    for r in records:
        resolver.resolve_crm(state, r)
    single = _clusters(resolver, state, records)
    for parts in (2, 3, 5):
        assert _hash_split(resolver, records, parts) == single
    assert _hash_split(resolver, list(reversed(records)), 1) == single


def test_fuzzy_population_is_resolved_correctly(resolver: IdentityResolver) -> None:
    people = population(seed=5, people=60)
    state = IdentityState.in_memory()
    for _, r in people:
        resolver.resolve_crm(state, r)
    truth: dict[int, set[str]] = defaultdict(set)
    for person, r in people:
        truth[person].add(r["record_id"])
    assert _clusters(resolver, state, [r for _, r in people]) == {frozenset(g) for g in truth.values()}


def test_deterministic_chains_give_the_same_clusters_in_any_order(resolver: IdentityResolver) -> None:
    records = []
    for i in range(30):
        # groups of four records chained e-mail, loyalty id, e-mail: 0-1, 1-2, 2-3
        g, k = divmod(i, 4)
        records.append(crm(f"r{i}", email=f"e{g}-{k // 2}@example.com", loyalty_id=f"L{g}X{(k + 1) // 2}"))
    state = IdentityState.in_memory()
    for r in records:
        resolver.resolve_crm(state, r)
    single = _clusters(resolver, state, records)
    assert len(single) == 8 and max(len(c) for c in single) == 4
    for parts in (2, 4):
        assert _hash_split(resolver, records, parts) == single
    assert _hash_split(resolver, list(reversed(records)), 1) == single
