"""The Redis serving keys of each table value: the one place both the agents and ``persona rebuild-redis`` use.

Each function is pure and returns ``[(redis_key, hash_fields), ...]``; the caller
writes every pair with :meth:`app.redis_sink.RedisSink.put` (the agents) or in
pipelined batches (the rebuild). Key families:

``persona:activity:<anonymous id hash>``
    the activity summary of an anonymous id and its current profile id (ingest);
``persona:identity:<identifier hash>``
    the lookup index, identifier hash -> ``profile_id`` (identity, identity-aliases);
``persona:profile:<profile id>:identity``
    the identity summary of a profile, or ``merged_into`` for an absorbed one (identity);
``persona:profile:<profile id>``
    the served profile: features, active session, segments (profiles).

Examples
--------
>>> activity_entries("h1", {"events": 2, "first_seen": 1.0, "last_seen": 2.0,
...                         "counts": {"page_view": 2}, "offset": 7}, "p-1")[0][1]
{'events': 2, 'first_seen': 1.0, 'last_seen': 2.0, 'counts': '{"page_view":2}', 'profile_id': 'p-1'}
>>> alias_entries("h1", {"profile_id": "p-1", "offset": 3})
[('persona:identity:h1', {'profile_id': 'p-1'})]
>>> identity_entries("i/h1", {"profile_id": "p-1"})
[]
>>> [k for k, _ in identity_entries("p/p-1", {"profile_id": "p-1", "identifiers": {"h1": "anonymous_id"}})]
['persona:profile:p-1:identity', 'persona:identity:h1']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from app.redis_sink import flatten
from tables import activity, profile_identity, profile_stage
from tables.identity.stream import PREFIXES, profile_summary

Fields = dict[str, str | int | float]
Entry = tuple[str, Fields]

ACTIVITY = "persona:activity:"
IDENTITY = "persona:identity:"
PROFILE = "persona:profile:"

#: The key families, as ``persona rebuild-redis`` counts them.
FAMILIES = ("activity", "identity", "profile_identity", "profile")


def family(redis_key: str) -> str:
    """The family of a serving key (one of :data:`FAMILIES`).

    >>> keys = ("persona:activity:h", "persona:identity:h", "persona:profile:p:identity", "persona:profile:p")
    >>> [family(k) for k in keys]
    ['activity', 'identity', 'profile_identity', 'profile']
    """
    if redis_key.startswith(ACTIVITY):
        return "activity"
    if redis_key.startswith(IDENTITY):
        return "identity"
    if redis_key.startswith(PROFILE) and redis_key.endswith(":identity"):
        return "profile_identity"
    if redis_key.startswith(PROFILE):
        return "profile"
    raise ValueError(f"not a serving key: {redis_key!r}")


def activity_entries(key: str, value: Mapping[str, Any], profile_id: str) -> list[Entry]:
    """The activity table's value for one anonymous id hash, stamped with its current profile."""
    fields = flatten(activity.summary(dict(value)))
    fields["profile_id"] = profile_id
    return [(f"{ACTIVITY}{key}", fields)]


def lookup_entry(identifier_hash: str, profile_id: str) -> Entry:
    """One lookup-index key: identifier hash -> profile id."""
    return f"{IDENTITY}{identifier_hash}", {"profile_id": profile_id}


def alias_entries(anon_hash: str, value: Mapping[str, Any]) -> list[Entry]:
    """The identity_alias table's value: the anonymous id's current profile in the lookup index."""
    return [lookup_entry(anon_hash, str(value["profile_id"]))]


def profile_identity_entries(profile: Mapping[str, Any]) -> list[Entry]:
    """A resolved profile's identity summary and one lookup key per identifier hash it holds."""
    pid = str(profile["profile_id"])
    summary = profile_summary(dict(profile))
    fields: Fields = {k: orjson.dumps(v).decode() for k, v in summary.items()}
    return [(f"{PROFILE}{pid}:identity", fields), *(lookup_entry(h, pid) for h in profile["identifiers"])]


def merged_entries(absorbed: str, into: str | None) -> list[Entry]:
    """The identity key of a profile absorbed by a merge: where it went."""
    return [(f"{PROFILE}{absorbed}:identity", {"merged_into": into or ""})]


def identity_entries(key: str, value: Any) -> list[Entry]:
    """The identity table's entry ``key``: only profiles (``p/<pid>``) are served; other prefixes give nothing."""
    if not key.startswith(PREFIXES["profiles"]) or not isinstance(value, Mapping):
        return []
    return profile_identity_entries(value)


def profile_entries(profile_id: str, value: Mapping[str, Any], now: float) -> list[Entry]:
    """The profiles table's value for one profile, served as of stream time ``now``.

    The tombstone of an absorbed profile is served as a ``merged_into`` marker on both
    of its keys, so ``GET /v1/profiles/<absorbed>`` can follow it.

    >>> profile_entries("p-b", {"merged_into": "p-a", "change_id": "c1", "offset": 3, "partition": 0}, 0.0)
    [('persona:profile:p-b', {'merged_into': 'p-a'}), ('persona:profile:p-b:identity', {'merged_into': 'p-a'})]
    """
    if profile_identity.is_tombstone(value):
        return [(f"{PROFILE}{profile_id}", {"merged_into": str(value["merged_into"])}),
                *merged_entries(profile_id, str(value["merged_into"]))]
    return [(f"{PROFILE}{profile_id}", flatten(profile_stage.serving(dict(value), now)))]


def gone_entries(table: str, key: str) -> list[str]:
    """The serving keys to delete when a table's entry is deleted (a tombstone in its changelog).

    >>> gone_entries("profiles", "p-1"), gone_entries("activity", "h1"), gone_entries("identity", "i/h1")
    (['persona:profile:p-1'], ['persona:activity:h1'], [])
    """
    if table == "profiles":
        return [f"{PROFILE}{key}"]
    if table == "activity":
        return [f"{ACTIVITY}{key}"]
    if table == "identity_alias":
        return [f"{IDENTITY}{key}"]
    if table == "identity" and key.startswith(PREFIXES["profiles"]):
        return [f"{PROFILE}{key[len(PREFIXES['profiles']):]}:identity"]
    return []


def profile_now(value: Mapping[str, Any], default: float) -> float:
    """The stream time a rebuild serves a profile at: its last event time, else ``default``."""
    last = value.get("profile", {}).get("last_seen")
    return float(last) if isinstance(last, int | float) else default
