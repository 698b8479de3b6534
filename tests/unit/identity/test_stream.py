"""The pure pieces of the streaming identity stage: forwarding, staged one-table state, aliases."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from app.simulator import SimConfig, iter_records
from tables.identity import IdentityResolver, IdentityState, JsonCopyStore
from tables.identity.normalise import normalise_id
from tables.identity.stream import (
    PREFIXES,
    StagedStore,
    alias_updates,
    forward_decision,
    identity_state,
    note_anonymous_id,
    observation_from_dict,
    observation_to_dict,
)

from .conftest import crm, event


def _traffic(customers: int = 40, max_events: int = 2500) -> list[dict[str, Any]]:
    config = SimConfig(seed=3, customers=customers, end=datetime(2026, 1, 1, tzinfo=UTC), max_events=max_events)
    docs = []
    for r in iter_records(config):
        if r.malformed:
            continue
        doc = orjson.loads(r.value)
        if "record_id" in doc or (isinstance(doc.get("anonymous_id"), str) and doc.get("event_id")):
            docs.append(doc)
    return docs


def _clusters(resolver: IdentityResolver, state: IdentityState, anons: set[str]) -> set[frozenset[str]]:
    groups: dict[str | None, set[str]] = defaultdict(set)
    for a in anons:
        groups[resolver.profile_of(state, a)].add(a)
    return {frozenset(g) for g in groups.values()}


def _stream(resolver: IdentityResolver, docs: list[dict[str, Any]], repeat: int = 1) -> tuple[JsonCopyStore, set[str]]:
    """What ingest + the identity agent do: forward new identity information only, resolve through one table."""
    table, seen, anons = JsonCopyStore(), {}, set()
    for n, doc in enumerate(docs):
        if "record_id" in doc:
            obs = resolver.observe_crm(doc)
            anon = None
        else:
            obs = resolver.observe_event(doc)
            anon = resolver.identifier_hash("anonymous_id", normalise_id(doc["anonymous_id"]) or "")
            anons.add(anon)
            seen[anon], forward = forward_decision(seen.get(anon), obs, resolver.hasher)
            if not forward:
                continue
        record = orjson.loads(orjson.dumps(observation_to_dict(obs)))  # through the topic
        for _ in range(repeat):  # at-least-once forwarding: the same observation again
            staged = StagedStore(table)
            if anon is not None:
                note_anonymous_id(staged, anon, n % 4)
            res = resolver.resolve(identity_state(staged), observation_from_dict(record))
            alias_updates(staged, [res.profile_id] if res.profile_id else [])
            staged.commit()
    return table, anons


@pytest.fixture(scope="module")
def traffic() -> list[dict[str, Any]]:
    return _traffic()


def test_forwarding_only_new_identity_information_loses_nothing(traffic: list[dict[str, Any]]) -> None:
    resolver = IdentityResolver("unit-test-secret-0123456789")
    every = IdentityState.in_memory()
    for doc in traffic:
        (resolver.resolve_crm if "record_id" in doc else resolver.resolve_event)(every, doc)
    table, anons = _stream(resolver, traffic)
    assert _clusters(resolver, identity_state(table), anons) == _clusters(resolver, every, anons)
    assert len(_clusters(resolver, every, anons)) < len(anons)  # the traffic does merge


def test_resolving_a_forwarded_record_twice_changes_nothing(traffic: list[dict[str, Any]]) -> None:
    resolver = IdentityResolver("unit-test-secret-0123456789")
    once, _ = _stream(resolver, traffic)
    twice, _ = _stream(resolver, traffic, repeat=2)
    assert dict(twice.raw_items()) == dict(once.raw_items())


def test_identifiers_are_only_hashes_in_the_forwarded_record_and_the_table(traffic: list[dict[str, Any]]) -> None:
    resolver = IdentityResolver("unit-test-secret-0123456789")
    table, _ = _stream(resolver, traffic)
    clear = set()
    for doc in traffic:
        clear.add(doc.get("anonymous_id") or "")
        clear.add(doc.get("user_id") or "")
        traits = doc.get("traits") or (doc.get("properties") or {}).get("traits") or {}
        clear.update(str(traits.get(k) or "") for k in ("email", "phone", "loyalty_id", "user_id"))
    clear.discard("")
    dump = b"".join(k.encode() + v for k, v in table.raw_items()).decode()
    leaked = [c for c in clear if c in dump]
    assert not leaked, leaked[:5]


def test_a_merge_re_aliases_every_anonymous_id_of_the_absorbed_profile() -> None:
    resolver = IdentityResolver("unit-test-secret-0123456789")
    table = JsonCopyStore()
    state = identity_state(table)
    h = {a: resolver.identifier_hash("anonymous_id", a) for a in ("a1", "a2")}
    sent: list[tuple[str, str, int]] = []
    for n, (anon, ev) in enumerate(
        [
            ("a1", event("e1", "a1")),
            ("a2", event("e2", "a2")),
            ("a2", event("e3", "a2", user_id="u1")),
            ("a1", event("e4", "a1", user_id="u1")),
        ]
    ):
        note_anonymous_id(table, h[anon], {"a1": 0, "a2": 3}[anon])
        res = resolver.resolve_event(state, ev)
        sent += alias_updates(table, [res.profile_id] if res.profile_id else [])
        assert res.profile_id is not None
        if n == 3:
            survivor = res.profile_id
            assert res.absorbed
    assert sent[:2] == [(h["a1"], sent[0][1], 0), (h["a2"], sent[1][1], 3)]
    last = {anon: (pid, part) for anon, pid, part in sent}
    assert last == {h["a1"]: (survivor, 0), h["a2"]: (survivor, 3)}
    assert table.get(PREFIXES["aliases"] + h["a2"]) == {"profile_id": survivor, "partition": 3}


def test_a_crm_record_does_not_alias_anything_by_itself() -> None:
    resolver = IdentityResolver("unit-test-secret-0123456789")
    table = JsonCopyStore()
    res = resolver.resolve_crm(identity_state(table), crm("r1", email="ann@example.com"))
    assert res.profile_id and alias_updates(table, [res.profile_id]) == []


def test_staged_writes_reach_the_table_only_on_commit() -> None:
    table = JsonCopyStore()
    staged = StagedStore(table)
    IdentityResolver("unit-test-secret-0123456789").resolve_crm(identity_state(staged), crm("r1", email="a@b.example"))
    assert len(table) == 0 and staged.staged
    written = staged.commit()
    assert len(table) == len(written) > 0
