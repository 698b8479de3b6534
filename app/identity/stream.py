"""Pure logic of the streaming identity stage: what ingest forwards, how state is staged, aliases.

The identity agent (``agents/identity.py``) owns all identity state in ONE table
partition fed by ONE ordered topic, ``<app_id>-identity-input``. This module holds
the pure pieces around :class:`~app.identity.resolver.IdentityResolver`:

``forward_decision``
    whether a clickstream event carries identity information that is new for its
    anonymous id (stage 1 remembers what it forwarded in the activity state);
``observation_to_dict`` / ``observation_from_dict``
    the identity-input record: an :class:`Observation`, already hashed at the edge,
    so the internal topic holds no identifier in clear;
``StagedStore`` / ``NamespacedStore``
    the four identity stores as key prefixes of one table (one changelog, one
    order), with writes staged until the record's outputs are acknowledged;
``alias_updates``
    which anonymous ids now belong to a different profile (the alias records);
``profile_summary``
    the serving view of a profile's identity (hashes only) for Redis.

Examples
--------
>>> from app.identity.config import ResolverConfig
>>> from app.identity.hashing import IdentifierHasher
>>> from app.identity.observation import observe_event
>>> h, cfg = IdentifierHasher("a-secret-of-16-chars"), ResolverConfig()
>>> ev = {"event_id": "e1", "anonymous_id": "a1", "type": "page_view"}
>>> obs = observe_event(ev, h, cfg)
>>> seen, forward = forward_decision(None, obs, h)
>>> forward, len(seen)
(True, 1)
>>> forward_decision(seen, observe_event({**ev, "event_id": "e2"}, h, cfg), h)[1]
False
>>> login = {**ev, "event_id": "e3", "user_id": "u1"}
>>> forward_decision(seen, observe_event(login, h, cfg), h)[1]
True
>>> observation_from_dict(observation_to_dict(obs)) == obs
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from app.events.validation import Rejection, parse_json, processing_error
from app.identity.hashing import IdentifierHasher
from app.identity.observation import Observation
from app.identity.resolver import IdentityResolver, Resolution
from app.identity.state import IdentityState
from tables.types import KeyValueStore

logger = logging.getLogger(__name__)

#: Most identity signatures remembered per anonymous id (oldest dropped first).
SEEN_CAP = 64

#: Key prefixes of the four identity stores and the alias map inside the one identity table.
PREFIXES = {"identifiers": "i/", "profiles": "p/", "members": "m/", "blocks": "b/", "aliases": "a/"}


# ---------------------------------------------------------------------------- forwarding
def signatures(obs: Observation, hasher: IdentifierHasher) -> list[str]:
    """What an observation tells identity resolution, as short strings (hashes only).

    Every identifier (``type:hash``), every junk identifier (reported as refused), and
    a keyed hash of the matching traits (clear names never leave the observation).
    """
    out = [f"{t}:{h}" for t, h in obs.identifiers]
    if obs.junk:
        out.extend(f"junk:{t}:{h}" for t, h in obs.junk)
    if obs.traits:
        out.append("traits:" + hasher.block("traits", orjson.dumps(obs.traits, option=orjson.OPT_SORT_KEYS).decode()))
    return out


def forward_decision(
    seen: list[str] | None, obs: Observation, hasher: IdentifierHasher, cap: int = SEEN_CAP
) -> tuple[list[str], bool]:
    """The new remembered signatures of an anonymous id, and whether to forward ``obs``.

    An event is forwarded when it carries a signature not yet forwarded for its
    anonymous id: the first event of an anonymous id (its own identifier), a user id
    or device id not seen with it before, new identify traits, a junk identifier.

    Examples
    --------
    >>> from app.identity.observation import Observation
    >>> h = IdentifierHasher("a-secret-of-16-chars")
    >>> obs = Observation("k", "anonymous_id", (("anonymous_id", "k"),))
    >>> forward_decision(["anonymous_id:k"], obs, h)
    (['anonymous_id:k'], False)
    >>> forward_decision([f"x{i}" for i in range(3)], obs, h, cap=3)
    (['x1', 'x2', 'anonymous_id:k'], True)
    """
    known = list(seen or ())
    fresh = [s for s in signatures(obs, hasher) if s not in known]
    if not fresh:
        return known, False
    return [*known, *fresh][-cap:], True


# ---------------------------------------------------------------------------- input records
def observation_to_dict(obs: Observation) -> dict[str, Any]:
    """A JSON-ready form of an observation (hashes and normalised matching traits only)."""
    return {
        "key": obs.key,
        "key_type": obs.key_type,
        "identifiers": [list(pair) for pair in obs.identifiers],
        "traits": obs.traits,
        "user_hashes": list(obs.user_hashes),
        "junk": [list(pair) for pair in obs.junk],
        "source": obs.source,
        "at": obs.at,
    }


def observation_from_dict(doc: dict[str, Any]) -> Observation:
    """The inverse of :func:`observation_to_dict`."""
    return Observation(
        key=doc["key"],
        key_type=doc["key_type"],
        identifiers=tuple((t, h) for t, h in doc["identifiers"]),
        traits=dict(doc.get("traits") or {}),
        user_hashes=tuple(doc.get("user_hashes") or ()),
        junk=tuple((t, h) for t, h in doc.get("junk") or ()),
        source=doc.get("source", ""),
        at=doc.get("at"),
    )


# ---------------------------------------------------------------------------- operator commands
_HASH_CHARS = frozenset("0123456789abcdef")


def split_command(profile_id: str, edges: list[tuple[str, str]], at: str) -> dict[str, Any]:
    """The identity-input record of an operator split: withdraw evidence edges of a profile.

    Examples
    --------
    >>> split_command("p-1", [("a" * 32, "b" * 32)], "2024-01-01T00:00:00Z")["command"]
    'split'
    >>> split_command("p-1", [("a" * 32, "not-a-hash")], "2024-01-01T00:00:00Z")
    Traceback (most recent call last):
    ...
    ValueError: identifier hashes are 32 lower-case hex characters, got 'not-a-hash'
    """
    if not profile_id.startswith("p-"):
        raise ValueError(f"profile ids start with 'p-', got {profile_id!r}")
    for a, b in edges:
        for h in (a, b):
            if len(h) != 32 or not set(h) <= _HASH_CHARS:
                raise ValueError(f"identifier hashes are 32 lower-case hex characters, got {h!r}")
    return {"command": "split", "profile_id": profile_id, "edges": [list(e) for e in edges], "at": at}


# ---------------------------------------------------------------------------- reading input records
#: Largest identity-input record read (an internal topic; ingest writes hashed observations of
#: records that passed ``PERSONA_MAX_RECORD_BYTES``, so this only bounds what a stray writer sends).
MAX_INPUT_BYTES = 1 << 20


@dataclass(frozen=True)
class ObservationInput:
    """An identity-input record from ingest: an observation, and for clickstream its anonymous id."""

    obs: Observation
    anon: str | None = None
    partition: int = 0
    # A CRM record's trait bands (banded at ingest, no clear PII) and when they were true.
    traits: dict[str, Any] | None = None
    ts: float | None = None


@dataclass(frozen=True)
class SplitInput:
    """An operator split (``persona identity split``): withdraw evidence edges of a profile."""

    profile_id: str
    edges: list[tuple[str, str]]
    at: str


def _pairs(value: Any, path: str) -> tuple[tuple[str, str], ...] | Rejection:
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value
    ):
        return Rejection("invalid_identity_input", "expected a list of [type, hash] string pairs", path)
    return tuple((t, h) for t, h in value)


def _observation(doc: Any) -> Observation | Rejection:
    if not isinstance(doc, dict):
        return Rejection("invalid_identity_input", "'obs' must be an object", "obs")
    identifiers = _pairs(doc.get("identifiers"), "obs.identifiers")
    junk = _pairs(doc.get("junk") or [], "obs.junk")
    for pairs in (identifiers, junk):
        if isinstance(pairs, Rejection):
            return pairs
    optional_str = {"key": doc.get("key"), "key_type": doc.get("key_type"), "at": doc.get("at")}
    for name, value in optional_str.items():
        if value is not None and not isinstance(value, str):
            return Rejection("invalid_identity_input", f"'{name}' must be a string or null", f"obs.{name}")
    if not isinstance(doc.get("source", ""), str):
        return Rejection("invalid_identity_input", "'source' must be a string", "obs.source")
    if not isinstance(doc.get("traits") or {}, dict):
        return Rejection("invalid_identity_input", "'traits' must be an object", "obs.traits")
    users = doc.get("user_hashes") or []
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        return Rejection("invalid_identity_input", "'user_hashes' must be a list of strings", "obs.user_hashes")
    return observation_from_dict(doc)


def parse_identity_input(raw: bytes, max_bytes: int = MAX_INPUT_BYTES) -> ObservationInput | SplitInput | Rejection:
    """Read one ``<app_id>-identity-input`` record, or say why it cannot be resolved.

    The topic is internal, but anything can write to it (a stray producer, an old
    ``persona identity split``); a record the resolver cannot take becomes a dead
    letter instead of stopping the one identity partition. Codes: those of every
    input (``record_too_large``, ``invalid_encoding``, ``invalid_json``,
    ``not_an_object``), ``unknown_command`` and ``invalid_identity_input`` (a
    missing or malformed observation or split; ``path`` names the field).

    Examples
    --------
    >>> parse_identity_input(b"nope").code
    'invalid_json'
    >>> parse_identity_input(b'{"anon": "h1", "partition": 0}').path
    'obs'
    >>> parse_identity_input(b'{"command": "merge"}').code
    'unknown_command'
    >>> parse_identity_input(b'{"command": "split", "profile_id": "p-1", "edges": [["a", "b"]], "at": "x"}').message
    "identifier hashes are 32 lower-case hex characters, got 'a'"
    >>> ok = orjson.dumps({"obs": {"key": "k", "key_type": "anonymous_id", "identifiers": [["anonymous_id", "k"]]},
    ...                    "anon": "k", "partition": 2})
    >>> parse_identity_input(ok)
    ObservationInput(obs=Observation(key='k', key_type='anonymous_id', identifiers=(('anonymous_id', 'k'),), \
traits={}, user_hashes=(), junk=(), source='', at=None), anon='k', partition=2, traits=None, ts=None)
    """
    doc = parse_json(raw, max_bytes)
    if isinstance(doc, Rejection):
        return doc
    if not isinstance(doc, dict):
        return Rejection("not_an_object", f"expected a JSON object, got {type(doc).__name__}")
    command = doc.get("command")
    if command == "split":
        edges = doc.get("edges")
        if not isinstance(edges, list) or not all(isinstance(e, list) and len(e) == 2 for e in edges):
            return Rejection("invalid_identity_input", "'edges' must be a list of [hash, hash] pairs", "edges")
        at, profile_id = doc.get("at"), doc.get("profile_id")
        if not isinstance(at, str) or not isinstance(profile_id, str):
            return Rejection("invalid_identity_input", "a split needs 'profile_id' and 'at' strings", "profile_id")
        try:  # the same checks as the command line that writes the record
            split_command(profile_id, [(str(a), str(b)) for a, b in edges], at)
        except ValueError as exc:
            return Rejection("invalid_identity_input", str(exc), "edges")
        return SplitInput(profile_id, [(str(a), str(b)) for a, b in edges], at)
    if command is not None:
        return Rejection("unknown_command", f"unknown identity command {str(command)[:64]!r}", "command")
    if "obs" not in doc:
        return Rejection("invalid_identity_input", "no 'obs' (observation) and no 'command'", "obs")
    obs = _observation(doc["obs"])
    if isinstance(obs, Rejection):
        return obs
    anon, partition = doc.get("anon"), doc.get("partition", 0)
    if anon is not None and not isinstance(anon, str):
        return Rejection("invalid_identity_input", "'anon' must be a string or null", "anon")
    if anon is not None and (not isinstance(partition, int) or isinstance(partition, bool) or partition < 0):
        return Rejection("invalid_identity_input", "'partition' must be a partition number", "partition")
    traits, ts = doc.get("traits"), doc.get("ts")
    if traits is not None and not isinstance(traits, dict):
        return Rejection("invalid_identity_input", "'traits' must be an object of trait bands", "traits")
    if not traits:
        return ObservationInput(obs, anon, int(partition))
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return Rejection("invalid_identity_input", "'traits' need a numeric 'ts'", "ts")
    return ObservationInput(obs, anon, int(partition), traits, float(ts))


def apply_identity_input(
    resolver: IdentityResolver, staged: KeyValueStore, parsed: ObservationInput | SplitInput
) -> tuple[Resolution, list[str]]:
    """Resolve one identity-input record into ``staged``: its resolution and the profiles it touched.

    An observation notes its anonymous id's clickstream partition (where its alias must go)
    and is resolved; a split withdraws the evidence edges and touches the split profile and
    the profiles it became. Writes only go to ``staged``, so a record that raises here
    leaves the table as it was.

    Examples
    --------
    >>> from app.identity.observation import Observation
    >>> r, base = IdentityResolver("a-secret-of-16-chars"), {}
    >>> obs = Observation("h1", "anonymous_id", (("anonymous_id", "h1"),), source="e1")
    >>> resolution, touched = apply_identity_input(r, base, ObservationInput(obs, "h1", 2))
    >>> touched == [resolution.profile_id], base["a/h1"]
    (True, {'profile_id': None, 'partition': 2})
    >>> apply_identity_input(r, base, SplitInput("p-unknown", [], "2026-01-01T00:00:00Z"))[1]
    []
    """
    state = identity_state(staged)
    if isinstance(parsed, SplitInput):
        changes = resolver.withdraw_evidence(state, parsed.profile_id, parsed.edges, parsed.at)
        touched = sorted({p for c in changes for p in [c["profile_id"], *c.get("new_profile_ids", ())]})
        return Resolution(parsed.profile_id, changes), touched
    if parsed.anon:
        note_anonymous_id(staged, parsed.anon, parsed.partition)
    resolution = resolver.resolve(state, parsed.obs)
    return resolution, [resolution.profile_id] if resolution.profile_id else []


@dataclass(frozen=True)
class Resolved:
    """One identity-input record applied to the staged state: what the agent must send and serve.

    ``aliases`` are ``(anonymous_id hash, profile_id, clickstream partition)`` (see
    :func:`alias_updates`); ``touched`` the profiles whose identity summary changed.
    """

    parsed: ObservationInput | SplitInput
    resolution: Resolution
    touched: list[str]
    aliases: list[tuple[str, str, int]]


def resolve_record(
    resolver: IdentityResolver, staged: StagedStore, raw: bytes, where: str = ""
) -> Resolved | Rejection:
    """Resolve one identity-input record into ``staged``, or say why it cannot be (its dead letter).

    The record resolves into a view nested in ``staged`` and reaches ``staged`` only
    if it resolved: a record the resolver raises on leaves ``staged`` as it was, so
    a batch of records (one ``staged`` chained through all of them, each record seeing
    the ones before it) loses only the bad record, never its neighbours' changes.

    Examples
    --------
    >>> r, table = IdentityResolver("a-secret-of-16-chars"), {}
    >>> staged = StagedStore(table)
    >>> obs = {"key": "h1", "key_type": "anonymous_id", "identifiers": [["anonymous_id", "h1"]], "source": "e1"}
    >>> done = resolve_record(r, staged, orjson.dumps({"obs": obs, "anon": "h1", "partition": 2}))
    >>> done.touched == [done.resolution.profile_id], done.aliases == [("h1", done.resolution.profile_id, 2)]
    (True, True)
    >>> resolve_record(r, staged, b'{"command": "merge"}').code
    'unknown_command'
    >>> table == {}, len(staged.commit()) > 0
    (True, True)
    """
    view = StagedStore(staged)
    try:
        parsed = parse_identity_input(raw)
        if isinstance(parsed, Rejection):
            return parsed
        resolution, touched = apply_identity_input(resolver, view, parsed)
        aliases = alias_updates(view, touched)
    except Exception as exc:
        # A poison record must not stop the one identity partition (every later record waits
        # behind it); its writes stay in the dropped view.
        logger.warning("identity input %s: the resolver raised %s; dead-lettered", where, type(exc).__name__)
        return processing_error("identity", exc)
    view.commit()
    return Resolved(parsed, resolution, touched, aliases)


def serving_updates(batch: Iterable[Resolved]) -> dict[str, str | None]:
    """What to serve after a batch, per profile: ``SERVE_PROFILE`` or the profile it was merged into.

    Only the last word of the batch about a profile counts, in the order of those last
    words (the Redis writes replace whole keys); a served profile is read from the state
    after the batch, so a batch serves what record-by-record serving ends with.

    Examples
    --------
    >>> from app.identity.resolver import Resolution
    >>> def done(pid, touched, absorbed=()):
    ...     return Resolved(SplitInput(pid, [], ""), Resolution(pid, [], absorbed=tuple(absorbed)), touched, [])
    >>> serving_updates([done("p-a", ["p-a"]), done("p-b", ["p-b"]), done("p-b", ["p-b"], absorbed=["p-a"])])
    {'p-b': '', 'p-a': 'p-b'}
    """
    plan: dict[str, str | None] = {}
    for done in batch:
        for pid in done.touched:
            plan.pop(pid, None)
            plan[pid] = SERVE_PROFILE
        for absorbed in done.resolution.absorbed:
            plan.pop(absorbed, None)
            plan[absorbed] = done.resolution.profile_id
    return plan


#: :func:`serving_updates`' word for "serve this profile's identity from the state".
SERVE_PROFILE = ""


# ---------------------------------------------------------------------------- stores
_DELETED = object()


class StagedStore:
    """Writes held back from an underlying store until :meth:`commit`.

    Reads see the staged writes. Values read from the underlying store are copied
    (JSON round trip), so a value changed in place before being written back never
    changes the underlying table behind its changelog's back.

    Examples
    --------
    >>> base = {"a": [1]}
    >>> s = StagedStore(base)
    >>> v = s.get("a"); v.append(2); s["a"] = v; s["b"] = 3; del s["a"]
    >>> base, "a" in s, s.get("b")
    ({'a': [1]}, False, 3)
    >>> sorted(s.commit()), base
    (['a', 'b'], {'b': 3})
    """

    def __init__(self, base: KeyValueStore) -> None:
        self.base = base
        self.staged: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.staged:
            value = self.staged[key]
            return default if value is _DELETED else value
        value = self.base.get(key)
        if value is None:
            return default
        return orjson.loads(orjson.dumps(value))

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _DELETED)
        if value is _DELETED:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.staged[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.staged[key] = _DELETED

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str) and key in self.staged:
            return self.staged[key] is not _DELETED
        return key in self.base

    def commit(self) -> list[str]:
        """Write the staged changes to the underlying store, in the order they were first made."""
        keys = list(self.staged)
        for key, value in self.staged.items():
            if value is _DELETED:
                if key in self.base:
                    del self.base[key]
            else:
                self.base[key] = value
        self.staged = {}
        return keys


class NamespacedStore:
    """One store seen through a key prefix (the four identity stores share one table).

    Examples
    --------
    >>> base: dict = {}
    >>> s = NamespacedStore(base, "p/")
    >>> s["x"] = 1; "x" in s, base, s.get("y", 0)
    (True, {'p/x': 1}, 0)
    >>> del s["x"]; base
    {}
    """

    def __init__(self, base: KeyValueStore, prefix: str) -> None:
        self.base, self.prefix = base, prefix

    def get(self, key: str, default: Any = None) -> Any:
        return self.base.get(self.prefix + key, default)

    def __getitem__(self, key: str) -> Any:
        value = self.base.get(self.prefix + key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.base[self.prefix + key] = value

    def __delitem__(self, key: str) -> None:
        del self.base[self.prefix + key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (self.prefix + key) in self.base

    def __iter__(self) -> Iterator[str]:  # pragma: no cover - not used on the hot path
        raise TypeError("identity stores are not scanned")


def identity_state(base: KeyValueStore) -> IdentityState:
    """The four identity stores as prefixes of one store (see :data:`PREFIXES`)."""
    return IdentityState(
        identifiers=NamespacedStore(base, PREFIXES["identifiers"]),
        profiles=NamespacedStore(base, PREFIXES["profiles"]),
        members=NamespacedStore(base, PREFIXES["members"]),
        blocks=NamespacedStore(base, PREFIXES["blocks"]),
    )


# ---------------------------------------------------------------------------- aliases
def note_anonymous_id(base: KeyValueStore, anon_hash: str, partition: int) -> None:
    """Remember the clickstream partition of an anonymous id (where its alias must go)."""
    key = PREFIXES["aliases"] + anon_hash
    entry = base.get(key)
    if entry is None:
        base[key] = {"profile_id": None, "partition": partition}
    elif entry.get("partition") != partition:
        base[key] = {**entry, "partition": partition}


def alias_updates(base: KeyValueStore, profile_ids: list[str]) -> list[tuple[str, str, int]]:
    """``(anonymous_id hash, profile_id, clickstream partition)`` of every anonymous id whose profile changed.

    Looks at the anonymous ids held by ``profile_ids`` (the resolved profile; absorbed
    profiles' identifiers are in it after a merge), compares with the last alias sent,
    and records the new one. Anonymous ids whose partition is unknown are skipped
    (they entered identity state without a clickstream event, which cannot happen).

    Examples
    --------
    >>> base = {"p/p-1": {"identifiers": {"h1": "anonymous_id", "u": "user_id", "h2": "anonymous_id"}}}
    >>> note_anonymous_id(base, "h1", 0); note_anonymous_id(base, "h2", 3)
    >>> alias_updates(base, ["p-1"])
    [('h1', 'p-1', 0), ('h2', 'p-1', 3)]
    >>> alias_updates(base, ["p-1"])
    []
    """
    out: list[tuple[str, str, int]] = []
    for pid in profile_ids:
        profile = base.get(PREFIXES["profiles"] + pid)
        if not profile:
            continue
        for h, t in sorted(profile["identifiers"].items()):
            if t != "anonymous_id":
                continue
            key = PREFIXES["aliases"] + h
            entry = base.get(key)
            if entry is None or entry.get("profile_id") == pid:
                continue
            base[key] = {**entry, "profile_id": pid}
            out.append((h, pid, int(entry["partition"])))
    return out


def profile_summary(profile: dict[str, Any]) -> dict[str, Any]:
    """The serving view of a profile's identity: identifier hashes by type and the evidence rules.

    Examples
    --------
    >>> s = profile_summary({"profile_id": "p-1", "identifiers": {"a": "email", "b": "anonymous_id"},
    ...                      "members": ["a"], "evidence": {"a|b": {"rule": "same_record"}}})
    >>> s["identifiers"], s["evidence"], s["members"]
    ({'anonymous_id': ['b'], 'email': ['a']}, {'same_record': 1}, 1)
    """
    by_type: dict[str, list[str]] = {}
    for h, t in sorted(profile["identifiers"].items()):
        by_type.setdefault(t, []).append(h)
    rules: dict[str, int] = {}
    for edge in profile.get("evidence", {}).values():
        rules[edge["rule"]] = rules.get(edge["rule"], 0) + 1
    return {
        "profile_id": profile["profile_id"],
        "identifiers": dict(sorted(by_type.items())),
        "evidence": dict(sorted(rules.items())),
        "members": len(profile.get("members", ())),
    }
