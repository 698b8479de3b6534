"""Withdrawing evidence: erasing identifiers or profiles, operator splits, recomputing components.

A profile is the connected component of its identifiers under its evidence
edges (``same_record`` and ``probabilistic``; deterministic links are shared
identifier nodes). When evidence is withdrawn — an identifier erased, or an
operator withdrawing edges — the component is recomputed from the remaining
edges. If it falls apart, each part becomes a profile: the part holding the
profile's origin identifier (else the smallest hash) keeps the profile id, the
others get ids derived from their smallest identifier hash, and a ``split``
change lists them all.

Withdrawn edges are not remembered: a record sent again re-creates its own
evidence (so an operator split of records that share an identifier holds only
until one of them arrives again).

Examples
--------
>>> from app.identity.resolver import IdentityResolver
>>> from app.identity.state import IdentityState
>>> r, state = IdentityResolver("a-secret-of-16-chars"), IdentityState.in_memory()
>>> rec = {"record_id": "1", "source": "crm", "traits": {"email": "a@example.com"}}
>>> a = r.resolve_crm(state, rec)
>>> b = r.resolve_crm(state, {"record_id": "2", "source": "crm",
...                          "traits": {"email": "a@example.com", "phone": "07911 123456"}})
>>> a.profile_id == b.profile_id
True
>>> email = r.identifier_hash("email", "a@example.com")
>>> changes = r.erase_identifier(state, email, at="2024-01-01T00:00:00Z")
>>> changes[0]["change"], len(changes[0]["new_profile_ids"])
('split', 2)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.identity.blocking import blocking_keys, remove_from_blocks
from app.identity.changes import change
from app.identity.hashing import IdentifierHasher, profile_id_for
from app.identity.state import IdentityState, edge_key


def _remove_member(state: IdentityState, member: str, hasher: IdentifierHasher) -> None:
    traits = state.members.get(member)
    if traits is None:
        return
    remove_from_blocks(state, member, blocking_keys(traits, hasher))
    del state.members[member]


def components(profile: dict[str, Any]) -> list[list[str]]:
    """Connected components of a profile's identifiers under its evidence edges, each sorted.

    Examples
    --------
    >>> components({"identifiers": {"a": "t", "b": "t", "c": "t"}, "evidence": {"a|b": {}}})
    [['a', 'b'], ['c']]
    """
    nodes = sorted(profile["identifiers"])
    parent = {n: n for n in nodes}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ek in profile["evidence"]:
        a, _, b = ek.partition("|")
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for n in nodes:
        groups.setdefault(find(n), []).append(n)
    return sorted(groups.values(), key=lambda g: g[0])


def recompute(
    state: IdentityState,
    profile: dict[str, Any],
    at: str,
    basis: str,
    evidence: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Write ``profile`` back, split into its components; a ``split`` change if it fell apart."""
    pid = profile["profile_id"]
    parts = components(profile)
    if not parts:
        del state.profiles[pid]
        return [change("split", pid, at, basis, new=[], evidence=evidence)]
    if len(parts) == 1:
        if profile["origin"] not in profile["identifiers"]:
            profile["origin"] = parts[0][0]
        state.profiles[pid] = profile
        return []
    keeper = next((i for i, g in enumerate(parts) if profile["origin"] in g), 0)
    new_ids: list[str] = []
    for i, group in enumerate(parts):
        if i == keeper:
            new_pid, origin = pid, (profile["origin"] if profile["origin"] in group else group[0])
        else:
            origin = group[0]
            new_pid = profile_id_for(origin)
            n = 0
            while new_pid in state.profiles or new_pid in new_ids:
                n += 1
                new_pid = profile_id_for(f"{origin}/{n}")
        new_ids.append(new_pid)
        members = set(group)
        part = {
            "profile_id": new_pid,
            "origin": origin,
            "identifiers": {h: profile["identifiers"][h] for h in group},
            "members": [m for m in profile["members"] if m in members],
            "evidence": {
                ek: v
                for ek, v in profile["evidence"].items()
                if ek.partition("|")[0] in members and ek.partition("|")[2] in members
            },
        }
        state.profiles[new_pid] = part
        if new_pid != pid:
            for h in group:
                entry = state.identifiers.get(h)
                if entry is not None:
                    owners = [new_pid if p == pid else p for p in entry["profiles"]]
                    state.identifiers[h] = {**entry, "profiles": list(dict.fromkeys(owners))}
    return [change("split", pid, at, basis, new=sorted(new_ids), evidence=evidence)]


def erase_identifier(
    state: IdentityState,
    identifier_hash: str,
    hasher: IdentifierHasher,
    at: str,
    basis: str | None = None,
) -> list[dict[str, Any]]:
    """Remove an identifier (and its matching record, if it is a member) from every profile.

    The profiles holding it are recomputed from their remaining evidence.
    """
    entry = state.identifiers.get(identifier_hash)
    if entry is None:
        return []
    basis = basis or f"erase/{identifier_hash}"
    evidence = [
        {"rule": "erased", "identifier_type": entry["type"], "identifier_hash": identifier_hash}
    ]
    del state.identifiers[identifier_hash]
    _remove_member(state, identifier_hash, hasher)
    out: list[dict[str, Any]] = []
    for pid in entry["profiles"]:
        profile = state.profiles.get(pid)
        if profile is None:
            continue
        profile["identifiers"].pop(identifier_hash, None)
        profile["members"] = [m for m in profile["members"] if m != identifier_hash]
        profile["evidence"] = {
            ek: v for ek, v in profile["evidence"].items() if identifier_hash not in ek.split("|")
        }
        out.extend(recompute(state, profile, at, basis, evidence))
    return out


def withdraw_evidence(
    state: IdentityState,
    profile_id: str,
    edges: Iterable[tuple[str, str]],
    at: str,
    basis: str | None = None,
) -> list[dict[str, Any]]:
    """Operator split: remove evidence edges (pairs of identifier hashes), recompute the profile."""
    profile = state.profiles.get(profile_id)
    if profile is None:
        return []
    removed = [edge_key(a, b) for a, b in edges]
    for ek in removed:
        profile["evidence"].pop(ek, None)
    basis = basis or f"withdraw/{profile_id}/{','.join(sorted(removed))}"
    evidence = [
        {"rule": "operator_split", "identifier_hash": h}
        for ek in sorted(removed)
        for h in ek.split("|")
    ]
    return recompute(state, profile, at, basis, evidence)


def erase_profile(state: IdentityState, profile_id: str, hasher: IdentifierHasher) -> list[str]:
    """Delete a profile with its identifiers, matching records and blocking entries.

    Returns the erased identifier hashes (sorted), for the ``profile-erasures``
    record. An identifier also held by another profile (multi-owner types) stays
    there; only this profile's claim is removed.
    """
    profile = state.profiles.get(profile_id)
    if profile is None:
        return []
    for member in profile["members"]:
        _remove_member(state, member, hasher)
    for h in profile["identifiers"]:
        entry = state.identifiers.get(h)
        if entry is None:
            continue
        owners = [p for p in entry["profiles"] if p != profile_id]
        if owners:
            state.identifiers[h] = {**entry, "profiles": owners}
        else:
            del state.identifiers[h]
    del state.profiles[profile_id]
    return sorted(profile["identifiers"])
