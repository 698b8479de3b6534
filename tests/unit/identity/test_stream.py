"""The pure pieces of the streaming identity stage: forwarding, staged one-table state, aliases."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.events.validation import Rejection
from app.identity import IdentityResolver, IdentityState, JsonCopyStore
from app.identity.normalise import normalise_id
from app.identity.observation import Observation
from app.identity.resolver import Resolution
from app.identity.stream import (
    PREFIXES,
    SERVE_PROFILE,
    ObservationInput,
    Resolved,
    SplitInput,
    StagedStore,
    alias_updates,
    forward_decision,
    identity_state,
    note_anonymous_id,
    observation_from_dict,
    observation_to_dict,
    parse_identity_input,
    resolve_record,
    serving_updates,
    split_command,
)
from app.simulator import SimConfig, iter_records

from .conftest import crm, event

DEAD_LETTER_CODES = set(
    orjson.loads((Path(__file__).parents[3] / "schemas" / "dead-letters.v1.json").read_bytes())["properties"]["reason"][
        "properties"
    ]["code"]["enum"]
)


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


# ---------------------------------------------------------------------------- reading identity-input records
def _forwarded_records(traffic: list[dict[str, Any]]) -> list[bytes]:
    resolver = IdentityResolver("a-secret-of-16-chars")
    out = []
    for doc in traffic[:200]:
        obs = resolver.observe_crm(doc) if "record_id" in doc else resolver.observe_event(doc)
        out.append(orjson.dumps({"obs": observation_to_dict(obs), "anon": obs.key, "partition": 1}))
    return out


def test_every_record_ingest_forwards_is_read_back_as_the_same_observation(traffic: list[dict[str, Any]]) -> None:
    for raw in _forwarded_records(traffic):
        parsed = parse_identity_input(raw)
        assert isinstance(parsed, ObservationInput)
        assert parsed.obs == observation_from_dict(orjson.loads(raw)["obs"])


def test_a_split_command_from_the_command_line_is_read_back() -> None:
    edge = ("a" * 32, "b" * 32)
    parsed = parse_identity_input(orjson.dumps(split_command("p-1", [edge], "2026-01-01T00:00:00Z")))
    assert parsed == SplitInput("p-1", [edge], "2026-01-01T00:00:00Z")


GOOD_OBS = {"key": "k", "key_type": "anonymous_id", "identifiers": [["anonymous_id", "k"]]}


@pytest.mark.parametrize(
    ("raw", "code", "path"),
    [
        (b"not json", "invalid_json", None),
        (bytes([0x22, 0xFF, 0x22]), "invalid_encoding", None),
        (b"[1, 2]", "not_an_object", None),
        (b'{"anon": "k", "partition": 0}', "invalid_identity_input", "obs"),
        (b'{"obs": "k"}', "invalid_identity_input", "obs"),
        (b'{"obs": {"key": "k"}}', "invalid_identity_input", "obs.identifiers"),
        (orjson.dumps({"obs": {**GOOD_OBS, "junk": [["email"]]}}), "invalid_identity_input", "obs.junk"),
        (orjson.dumps({"obs": {**GOOD_OBS, "key": 5}}), "invalid_identity_input", "obs.key"),
        (orjson.dumps({"obs": {**GOOD_OBS, "traits": [1]}}), "invalid_identity_input", "obs.traits"),
        (orjson.dumps({"obs": {**GOOD_OBS, "user_hashes": [1]}}), "invalid_identity_input", "obs.user_hashes"),
        (orjson.dumps({"obs": GOOD_OBS, "anon": "k", "partition": -1}), "invalid_identity_input", "partition"),
        (orjson.dumps({"obs": GOOD_OBS, "anon": 3}), "invalid_identity_input", "anon"),
        (b'{"command": "merge", "profile_id": "p-1"}', "unknown_command", "command"),
        (b'{"command": "split", "profile_id": "p-1", "at": "x"}', "invalid_identity_input", "edges"),
        (b'{"command": "split", "profile_id": "p-1", "edges": [["a"]], "at": "x"}', "invalid_identity_input", "edges"),
        (
            orjson.dumps({"command": "split", "profile_id": "p-1", "edges": [["a" * 32, "B" * 32]], "at": "x"}),
            "invalid_identity_input",
            "edges",
        ),
        (
            orjson.dumps({"command": "split", "profile_id": "x-1", "edges": [], "at": "x"}),
            "invalid_identity_input",
            "edges",
        ),
        (b'{"command": "split", "profile_id": "p-1", "edges": []}', "invalid_identity_input", "profile_id"),
    ],
)
def test_a_record_the_resolver_cannot_take_is_refused_with_a_reason(raw: bytes, code: str, path: str | None) -> None:
    verdict = parse_identity_input(raw)
    assert isinstance(verdict, Rejection)
    assert (verdict.code, verdict.path) == (code, path)
    assert verdict.message
    assert code in DEAD_LETTER_CODES


def test_an_oversized_record_is_refused_before_it_is_parsed() -> None:
    verdict = parse_identity_input(orjson.dumps({"obs": GOOD_OBS, "pad": "x" * 100}), max_bytes=50)
    assert isinstance(verdict, Rejection) and verdict.code == "record_too_large"


# ---------------------------------------------------------------------------- batches (agents/identity.py)
def _identity_inputs(traffic: list[dict[str, Any]]) -> list[bytes]:
    """The identity-input records ingest writes for ``traffic``: new identity information only."""
    resolver = IdentityResolver("unit-test-secret-0123456789")
    seen: dict[str, list[str]] = {}
    out = []
    for n, doc in enumerate(traffic):
        if "record_id" in doc:
            out.append(orjson.dumps({"obs": observation_to_dict(resolver.observe_crm(doc))}))
            continue
        obs = resolver.observe_event(doc)
        anon = resolver.identifier_hash("anonymous_id", normalise_id(doc["anonymous_id"]) or "")
        seen[anon], forward = forward_decision(seen.get(anon), obs, resolver.hasher)
        if forward:
            out.append(orjson.dumps({"obs": observation_to_dict(obs), "anon": anon, "partition": n % 4}))
    return out


def _outputs(results: list[Resolved | Rejection]) -> list[Any]:
    """What the agent sends for ``results``, in order: identity changes and aliases, or the refusal."""
    return [
        (r.code,) if isinstance(r, Rejection) else (r.resolution.changes, r.aliases, r.touched) for r in results
    ]


def _resolve_in_batches(
    resolver: IdentityResolver, raws: list[bytes], size: int
) -> tuple[JsonCopyStore, list[Resolved | Rejection]]:
    """What the identity agent does: one staged view per batch, committed once after the batch."""
    table, results = JsonCopyStore(), []
    for start in range(0, len(raws), size):
        staged = StagedStore(table)
        results += [resolve_record(resolver, staged, raw) for raw in raws[start : start + size]]
        staged.commit()
    return table, results


def test_a_batch_gives_the_same_identity_state_and_outputs_as_record_by_record(traffic: list[dict[str, Any]]) -> None:
    resolver = IdentityResolver("unit-test-secret-0123456789")
    raws = _identity_inputs(traffic)
    one_by_one, single = _resolve_in_batches(resolver, raws, 1)
    batched, batch = _resolve_in_batches(resolver, raws, 7)
    assert dict(batched.raw_items()) == dict(one_by_one.raw_items())
    assert _outputs(batch) == _outputs(single)
    changes = [c["change"] for r in single if isinstance(r, Resolved) for c in r.resolution.changes]
    assert "merged" in changes  # the batches chain merges across records
    assert len(raws) > 7 * 10  # many batches


class _PoisonResolver(IdentityResolver):
    """Raises on the observation keyed ``poison``, after it has written into the state."""

    def resolve(self, state: IdentityState, obs: Observation) -> Resolution:
        resolution = super().resolve(state, obs)
        if obs.key == "poison":
            raise RuntimeError("poison")
        return resolution


def test_a_bad_record_in_the_middle_of_a_batch_is_refused_and_the_others_apply(traffic: list[dict[str, Any]]) -> None:
    resolver = _PoisonResolver("unit-test-secret-0123456789")
    good = _identity_inputs(traffic)[:60]
    poison = orjson.dumps({"obs": {**GOOD_OBS, "key": "poison", "identifiers": [["user_id", "f" * 32]]}})
    batch = [*good[:30], poison, b"not json", *good[30:]]
    table, results = _resolve_in_batches(resolver, batch, len(batch))
    clean, expected = _resolve_in_batches(resolver, good, len(good))
    refusals = [r for r in results if isinstance(r, Rejection)]
    assert [(r.code, "poison" in r.message) for r in refusals] == [
        ("processing_error", True),
        ("invalid_json", False),
    ]
    assert dict(table.raw_items()) == dict(clean.raw_items())  # the poison record's writes did not leak
    assert _outputs([r for r in results if isinstance(r, Resolved)]) == _outputs(expected)


def test_serving_after_a_batch_ends_with_the_last_word_about_each_profile(
    resolver: IdentityResolver, traffic: list[dict[str, Any]]
) -> None:
    _, results = _resolve_in_batches(resolver, _identity_inputs(traffic), 10_000)
    plan = serving_updates([r for r in results if isinstance(r, Resolved)])
    merged_into = {pid: into for pid, into in plan.items() if into != SERVE_PROFILE}
    assert merged_into, "the traffic merges profiles"
    assert all(plan[into] == SERVE_PROFILE for into in merged_into.values() if into in plan)


def test_a_batch_resolved_again_after_a_crash_before_its_commit_emits_the_same_outputs(
    traffic: list[dict[str, Any]],
) -> None:
    resolver = IdentityResolver("unit-test-secret-0123456789")
    raws = _identity_inputs(traffic)
    table, _ = _resolve_in_batches(resolver, raws[:40], 40)
    before = dict(table.raw_items())
    crashed = StagedStore(table)
    lost = [resolve_record(resolver, crashed, raw) for raw in raws[40:80]]  # outputs sent, state never committed
    assert dict(table.raw_items()) == before
    staged = StagedStore(table)
    again = [resolve_record(resolver, staged, raw) for raw in raws[40:80]]
    assert _outputs(again) == _outputs(lost)
    assert any(r.resolution.changes for r in again if isinstance(r, Resolved))  # change ids included
