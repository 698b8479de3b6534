"""The identity resolver: one observation in, new state and identity changes out.

:class:`IdentityResolver` is pure with respect to its inputs: it holds only
configuration (the hasher, the match model, the policy) and reads and writes the
:class:`~app.identity.state.IdentityState` passed to each call. The Faust
agents (the imperative shell) call :meth:`IdentityResolver.resolve_event` for
``clickstream`` events and :meth:`IdentityResolver.resolve_crm` for
``crm-profiles`` records, send :attr:`Resolution.changes` to
``identity-changes``, and key downstream state by :attr:`Resolution.profile_id`.

How one observation is resolved
-------------------------------
1. Shared-device bookkeeping: an anonymous/device id seen with more than
   ``max_users_per_device`` user ids is marked shared and links nothing any more.
2. Deterministic links: profiles holding any of the observation's identifiers
   (``unless_contradicted`` types only if the other fields do not weigh below
   ``contradiction_weight``).
3. Probabilistic links: members sharing a blocking key are scored with the
   Fellegi-Sunter model; each profile's best member counts. Profiles at or above
   the merge threshold link; those between the thresholds are ``possible_match``.
4. Guards: profiles are accepted one by one (the observation's own profile,
   then deterministic links, then probabilistic by falling weight); one that would
   break a per-type limit is ``refused``.
5. All accepted profiles merge into the smallest profile id (deterministic, and
   independent of which worker saw what first); with none, a new profile gets the
   id derived from the observation's key.

Examples
--------
>>> r = IdentityResolver("a-secret-of-16-chars")
>>> state = IdentityState.in_memory()
>>> ev = {"event_id": "e1", "anonymous_id": "a1", "type": "page_view",
...       "timestamp": "2024-01-01T00:00:00Z"}
>>> p1 = r.resolve_event(state, ev).profile_id
>>> crm = {"record_id": "c1", "source": "crm", "traits": {"email": "ann@example.com"}}
>>> p2 = r.resolve_crm(state, crm).profile_id
>>> p1 != p2
True
>>> login = {**ev, "event_id": "e2", "type": "identify", "user_id": "u1",
...          "properties": {"traits": {"email": "Ann@Example.com"}}}
>>> res = r.resolve_event(state, login)
>>> res.changes[0]["change"], res.profile_id == min(p1, p2), sorted(res.absorbed) == [max(p1, p2)]
('merged', True, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.identity import split
from app.identity.blocking import blocking_keys, remove_from_blocks
from app.identity.changes import change
from app.identity.config import ResolverConfig
from app.identity.hashing import IdentifierHasher, profile_id_for
from app.identity.model import MatchModel
from app.identity.observation import (
    Observation,
    crm_record_value,
    observe_crm,
    observe_event,
)
from app.identity.state import IdentityState, edge_key

#: ``at`` of changes when neither the record nor the caller gives a time.
EPOCH = "1970-01-01T00:00:00+00:00"
#: Most members of one profile scored in a contradiction check.
_MAX_CHECKED_MEMBERS = 32

Reason = tuple[str, str, str, float]  # (kind "det"|"prob", type or "", hash or member, weight)


@dataclass(frozen=True)
class Resolution:
    """Result of resolving one observation.

    Attributes
    ----------
    profile_id
        Canonical profile of the record (``None`` only when every identifier was junk).
    changes
        ``identity-changes`` records to emit, in order.
    created
        Whether the profile was created by this observation.
    absorbed
        Profiles merged into ``profile_id`` by this observation (they no longer exist).
    """

    profile_id: str | None
    changes: list[dict[str, Any]] = field(default_factory=list)
    created: bool = False
    absorbed: tuple[str, ...] = ()


class IdentityResolver:
    """Resolves observations against an :class:`IdentityState`.

    Parameters
    ----------
    secret
        HMAC secret of identifier hashes (``Settings.hmac_secret``).
    model
        Match weights and thresholds; :meth:`MatchModel.default` if omitted.
    config
        Policy (limits, link modes, blocking caps, junk values).
    """

    def __init__(
        self,
        secret: str,
        model: MatchModel | None = None,
        config: ResolverConfig | None = None,
    ) -> None:
        self.hasher = IdentifierHasher(secret)
        self.model = model or MatchModel.default()
        self.config = config or ResolverConfig()

    # ------------------------------------------------------------------ inputs
    def observe_crm(self, record: Mapping[str, Any]) -> Observation:
        """Normalise and hash a ``crm-profiles`` record."""
        return observe_crm(record, self.hasher, self.config)

    def observe_event(self, event: Mapping[str, Any], hasher: IdentifierHasher | None = None) -> Observation:
        """Normalise and hash a ``clickstream`` event (with ``hasher``, a memoising view of
        :attr:`hasher`, when given: :meth:`IdentifierHasher.memoising`)."""
        return observe_event(event, hasher or self.hasher, self.config)

    def resolve_crm(
        self, state: IdentityState, record: Mapping[str, Any], at: str | None = None
    ) -> Resolution:
        """Resolve a ``crm-profiles`` record; ``at`` is used when it has no ``updated_at``."""
        return self.resolve(state, self.observe_crm(record), at)

    def resolve_event(
        self, state: IdentityState, event: Mapping[str, Any], at: str | None = None
    ) -> Resolution:
        """Resolve a ``clickstream`` event (any type; ``identify`` adds its traits)."""
        return self.resolve(state, self.observe_event(event), at)

    def identifier_hash(self, id_type: str, value: str) -> str:
        """The hash of an already-normalised identifier value."""
        return self.hasher.identifier(id_type, value)

    def crm_record_hash(self, source: str, record_id: str) -> str:
        """The identifier hash of a CRM record (to look up its profile)."""
        return self.hasher.identifier("crm_record_id", crm_record_value(source, record_id))

    @staticmethod
    def profile_of(state: IdentityState, identifier_hash: str) -> str | None:
        """The profile that holds an identifier hash (the first, for multi-owner types)."""
        entry = state.identifiers.get(identifier_hash)
        return entry["profiles"][0] if entry and entry["profiles"] else None

    # ------------------------------------------------------------------ withdrawal
    def erase_identifier(
        self, state: IdentityState, identifier_hash: str, at: str = EPOCH
    ) -> list[dict[str, Any]]:
        """Erase one identifier everywhere; the ``split`` changes of profiles that fell apart."""
        return split.erase_identifier(state, identifier_hash, self.hasher, at)

    def withdraw_evidence(
        self,
        state: IdentityState,
        profile_id: str,
        edges: Iterable[tuple[str, str]],
        at: str = EPOCH,
    ) -> list[dict[str, Any]]:
        """Operator split: remove evidence edges of a profile; the ``split`` change, if any."""
        return split.withdraw_evidence(state, profile_id, edges, at)

    def erase_profile(self, state: IdentityState, profile_id: str) -> list[str]:
        """Erase a profile from identity state; returns its identifier hashes."""
        return split.erase_profile(state, profile_id, self.hasher)

    # ------------------------------------------------------------------ core
    def resolve(self, state: IdentityState, obs: Observation, at: str | None = None) -> Resolution:
        """Apply one observation to ``state``; see the module docstring for the steps."""
        when = obs.at or at or EPOCH
        key = obs.key
        if key is None:
            return Resolution(None, [])
        cfg, ids, profiles = self.config, state.identifiers, state.profiles
        entries: dict[str, Any] = {h: ids.get(h) for _, h in obs.identifiers}

        # 1. shared devices
        newly_shared: list[tuple[str, str]] = []
        if obs.user_hashes and cfg.shared_types:
            for t, h in obs.identifiers:
                e = entries[h]
                if e is None or t not in cfg.shared_types:
                    continue
                users = list(e.get("users", ()))
                fresh = [u for u in obs.user_hashes if u not in users]
                if not fresh:
                    continue
                users.extend(fresh)
                e = {**e, "users": users[: cfg.max_users_per_device + 1]}
                if len(users) > cfg.max_users_per_device and not e.get("shared"):
                    e["shared"] = True
                    newly_shared.append((t, h))
                entries[h] = e
                ids[h] = e

        # 2. deterministic links
        reasons: dict[str, list[Reason]] = {}
        key_entry = entries[key]
        own = key_entry["profiles"][0] if key_entry and key_entry["profiles"] else None
        if own is not None:
            reasons[own] = [("det", obs.key_type or "", key, 0.0)]
        contradicted: list[tuple[str, str, str, float]] = []
        for t, h in obs.identifiers:
            e = entries[h]
            if h == key or not e or e.get("shared"):
                continue
            mode = cfg.link_mode(t)
            if mode == "probabilistic":
                continue
            for p in e["profiles"]:
                if p in reasons:
                    reasons[p].append(("det", t, h, 0.0))
                    continue
                if mode == "unless_contradicted" and obs.traits:
                    w = self._best_weight(state, p, obs.traits, exclude=t)
                    if w is not None and w < cfg.contradiction_weight:
                        contradicted.append((p, t, h, w))
                        continue
                reasons[p] = [("det", t, h, 0.0)]

        # 3. probabilistic links
        possible: dict[str, tuple[float, str]] = {}
        bkeys: list[str] = []
        if obs.traits:
            bkeys = blocking_keys(obs.traits, self.hasher)
            best = self._candidates(state, obs, bkeys, reasons)
            model = self.model
            for p, (w, m) in sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0])):
                if w >= model.merge_weight:
                    reasons[p] = [("prob", "", m, w)]
                elif w >= model.review_weight:
                    possible[p] = (w, m)

        # 4. accept under limits
        acc: dict[str, str] = {}
        counts: dict[str, int] = {}
        loaded: dict[str, dict[str, Any]] = {}
        accepted: list[str] = []
        if own is not None:
            prof = profiles.get(own)
            if prof is None:  # dangling entry (should not happen): start afresh
                reasons.pop(own, None)
                own = None
            else:
                loaded[own] = prof
                accepted.append(own)
                self._absorb_counts(acc, counts, prof["identifiers"])
        dropped: list[tuple[str, str]] = []
        pending: list[tuple[str, str]] = []  # owned by a profile not (yet) accepted
        new_ids: list[tuple[str, str]] = []
        for t, h in obs.identifiers:
            e = entries[h]
            if h in acc:
                new_ids.append((t, h))
            elif e and e["profiles"]:
                pending.append((t, h))
            elif self._fits(counts, {h: t}, acc):
                self._absorb_counts(acc, counts, {h: t})
                new_ids.append((t, h))
            else:
                dropped.append((t, h))
        refused: list[tuple[str, str]] = []
        for p in reasons:
            if p == own:
                continue
            prof = profiles.get(p)
            if prof is None:
                continue
            violated = self._violation(counts, prof["identifiers"], acc)
            if violated is not None:
                refused.append((p, violated))
                continue
            loaded[p] = prof
            accepted.append(p)
            self._absorb_counts(acc, counts, prof["identifiers"])
        for t, h in pending:
            e = entries[h]
            if h in acc:
                new_ids.append((t, h))
            elif (
                cfg.link_mode(t) != "deterministic"
                and not e.get("shared")
                and self._fits(counts, {h: t}, acc)
            ):
                self._absorb_counts(acc, counts, {h: t})
                new_ids.append((t, h))

        # 5. survivor and merge
        created = not accepted
        if created:
            pid = profile_id_for(key)
            n = 0
            while pid in profiles:  # only after erasures re-use a key
                n += 1
                pid = profile_id_for(f"{key}/{n}")
            prof = {
                "profile_id": pid,
                "origin": key,
                "identifiers": {},
                "members": [],
                "evidence": {},
            }
            absorbed: list[str] = []
        else:
            pid = min(accepted)
            absorbed = sorted(p for p in accepted if p != pid)
            prof = loaded[pid]
            for a in absorbed:
                self._merge_into(state, prof, loaded[a])
        dirty = created or bool(absorbed)

        # 6. the observation's identifiers, evidence edges and matching record
        pidents, edges = prof["identifiers"], prof["evidence"]
        for t, h in new_ids:
            e = ids.get(h)
            if e is None:
                e = {"type": t, "profiles": [pid]}
                if t in cfg.shared_types:
                    e["users"] = list(obs.user_hashes[: cfg.max_users_per_device + 1])
                    if len(obs.user_hashes) > cfg.max_users_per_device:
                        e["shared"] = True
                ids[h] = e
            elif pid not in e["profiles"]:
                e = {**e, "profiles": [*e["profiles"], pid]}
                ids[h] = e
            if pidents.get(h) != t:
                pidents[h] = t
                dirty = True
            if h != key:
                ek = edge_key(key, h)
                if ek not in edges:
                    edges[ek] = {"rule": "same_record"}
                    dirty = True
        for p in accepted:
            for kind, _t, m, w in reasons.get(p, ()):
                if kind == "prob":
                    edges[edge_key(key, m)] = {"rule": "probabilistic", "weight": round(w, 3)}
                    dirty = True
        if obs.traits:
            old = state.members.get(key)
            if old != obs.traits:
                state.members[key] = obs.traits
                self._reindex(state, key, old, bkeys)
            if key not in prof["members"]:
                prof["members"].append(key)
                dirty = True
        if dirty:
            profiles[pid] = prof

        # 7. changes
        out = _Changes(obs.source, when)
        for t, h in obs.junk:
            out.add("refused", pid, evidence=[_ident("refused:blocklisted", t, h)])
        for t, h in newly_shared:
            owners = [p for p in (entries[h] or {}).get("profiles", ()) if p != pid]
            out.add(
                "refused",
                pid,
                absorbed=owners[:1],
                evidence=[_ident("refused:shared_device", t, h)],
            )
        for t, h in dropped:
            out.add("refused", pid, evidence=[_ident(f"refused:limit:{t}", t, h)])
        for p, t, h, w in contradicted:
            if p not in accepted:
                item = {**_ident("refused:contradicted", t, h), "weight": round(w, 3)}
                out.add("refused", pid, absorbed=[p], evidence=[item])
        for p, t in refused:
            ev = [
                {"rule": f"refused:limit:{t}", "identifier_type": t},
                *self._evidence(state, obs, reasons[p]),
            ]
            out.add("refused", pid, absorbed=[p], evidence=ev)
        if absorbed:
            ev = [item for p in accepted for item in self._evidence(state, obs, reasons.get(p, ()))]
            out.add("merged", pid, absorbed=absorbed, evidence=ev)
        for p, (w, m) in sorted(possible.items()):
            if p not in accepted and p in profiles:
                out.add(
                    "possible_match",
                    pid,
                    absorbed=[p],
                    evidence=self._evidence(state, obs, [("prob", "", m, w)]),
                )
        return Resolution(pid, out.records, created, tuple(absorbed))

    # ------------------------------------------------------------------ helpers
    def _candidates(
        self,
        state: IdentityState,
        obs: Observation,
        bkeys: list[str],
        skip: Mapping[str, Any],
    ) -> dict[str, tuple[float, str]]:
        """Best (weight, member) per candidate profile found through the blocking keys."""
        blocks, ids, members = state.blocks, state.identifiers, state.members
        cap, limit = self.config.block_cap, self.config.max_candidates
        score, prior = self.model.field_weight_sum, self.model.prior_weight
        traits, key = obs.traits, obs.key
        seen: set[str] = set()
        best: dict[str, tuple[float, str]] = {}
        for bk in bkeys:
            listed = blocks.get(bk)
            if not listed or len(listed) >= cap:
                continue
            for m in listed:
                if m in seen or m == key:
                    continue
                seen.add(m)
                if len(seen) > limit:
                    return best
                e = ids.get(m)
                if not e or not e["profiles"]:
                    continue
                p = e["profiles"][0]
                if p in skip:
                    continue
                other = members.get(m)
                if other is None:
                    continue
                w = prior + score(traits, other)
                b = best.get(p)
                if b is None or w > b[0]:
                    best[p] = (w, m)
        return best

    def _best_weight(
        self, state: IdentityState, profile_id: str, traits: Mapping[str, Any], exclude: str
    ) -> float | None:
        """Best field-weight sum (no prior, ``exclude`` left out) against the profile's members."""
        prof = state.profiles.get(profile_id)
        if not prof:
            return None
        best: float | None = None
        for m in prof["members"][:_MAX_CHECKED_MEMBERS]:
            other = state.members.get(m)
            if other is None:
                continue
            w = self.model.field_weight_sum(traits, other, exclude)
            if best is None or w > best:
                best = w
        return best

    def _fits(
        self, counts: Mapping[str, int], extra: Mapping[str, str], acc: Mapping[str, str]
    ) -> bool:
        return self._violation(counts, extra, acc) is None

    def _violation(
        self, counts: Mapping[str, int], extra: Mapping[str, str], acc: Mapping[str, str]
    ) -> str | None:
        """The first identifier type whose limit ``extra`` would break, or ``None``."""
        limits = self.config.limits
        added: dict[str, int] = {}
        for h, t in extra.items():
            if t in limits and h not in acc:
                added[t] = added.get(t, 0) + 1
        for t, n in sorted(added.items()):
            if counts.get(t, 0) + n > limits[t]:
                return t
        return None

    @staticmethod
    def _absorb_counts(
        acc: dict[str, str], counts: dict[str, int], extra: Mapping[str, str]
    ) -> None:
        for h, t in extra.items():
            if h not in acc:
                acc[h] = t
                counts[t] = counts.get(t, 0) + 1

    @staticmethod
    def _merge_into(
        state: IdentityState, survivor: dict[str, Any], absorbed: dict[str, Any]
    ) -> None:
        """Move all of ``absorbed`` into ``survivor`` (the caller writes it) and delete it."""
        ids = state.identifiers
        sid, aid = survivor["profile_id"], absorbed["profile_id"]
        survivor["identifiers"].update(absorbed["identifiers"])
        have = set(survivor["members"])
        survivor["members"].extend(m for m in absorbed["members"] if m not in have)
        survivor["evidence"].update(absorbed["evidence"])
        for h in absorbed["identifiers"]:
            e = ids.get(h)
            if e is None:
                continue
            owners: list[str] = []
            for p in e["profiles"]:
                q = sid if p == aid else p
                if q not in owners:
                    owners.append(q)
            ids[h] = {**e, "profiles": owners}
        del state.profiles[aid]

    def _reindex(
        self, state: IdentityState, member: str, old: Mapping[str, Any] | None, new_keys: list[str]
    ) -> None:
        """Move ``member`` from the blocking keys of its old record to ``new_keys``."""
        blocks, cap = state.blocks, self.config.block_cap
        old_keys = set(blocking_keys(old, self.hasher)) if old else set()
        for bk in new_keys:
            if bk in old_keys:
                continue
            listed = blocks.get(bk)
            if listed is None:
                blocks[bk] = [member]
            elif len(listed) < cap:
                listed.append(member)
                blocks[bk] = listed
        remove_from_blocks(state, member, old_keys - set(new_keys))

    def _evidence(
        self, state: IdentityState, obs: Observation, reasons: Any
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for kind, t, h, w in reasons:
            if kind == "det":
                items.append(_ident("deterministic", t, h))
                continue
            other = state.members.get(h) or {}
            entry = state.identifiers.get(h) or {}
            member_type = entry.get("type", "crm_record_id")
            for fe in self.model.explain(obs.traits, other):
                items.append(
                    {
                        "rule": "probabilistic",
                        "field": fe.field,
                        "score": fe.score,
                        "weight": round(fe.weight, 3),
                        "identifier_type": member_type,
                        "identifier_hash": h,
                    }
                )
            items.append({"rule": "probabilistic", "field": "match_weight", "weight": round(w, 3)})
        return items


def _ident(rule: str, id_type: str, identifier_hash: str) -> dict[str, Any]:
    return {"rule": rule, "identifier_type": id_type, "identifier_hash": identifier_hash}


class _Changes:
    """Accumulates the change records of one resolution, numbering them for their ids."""

    def __init__(self, basis: str, at: str) -> None:
        self.basis, self.at = basis, at
        self.records: list[dict[str, Any]] = []

    def add(
        self,
        kind: str,
        profile_id: str,
        *,
        absorbed: list[str] | None = None,
        new: list[str] | None = None,
        evidence: list[dict[str, Any]] | None = None,
    ) -> None:
        self.records.append(
            change(
                kind,
                profile_id,
                self.at,
                self.basis,
                absorbed=absorbed,
                new=new,
                evidence=evidence,
                seq=len(self.records),
            )
        )
