"""The Redis serving keys of each table value: the one place both the agents and ``persona rebuild-redis`` use.

Each function is pure and returns ``[(redis_key, hash_fields), ...]``; the caller
writes every pair with :meth:`app.runtime.redis_sink.RedisSink.put` (the agents) or in
pipelined batches (the rebuild). Key families:

``persona:activity:<anonymous id hash>``
    the activity summary of an anonymous id and its current profile id (ingest);
``persona:identity:<identifier hash>``
    the lookup index, identifier hash -> ``profile_id`` (identity, identity-aliases);
``persona:profile:<profile id>:identity``
    the identity summary of a profile, or ``merged_into`` for an absorbed one (identity);
``persona:profile:<profile id>``
    the served profile: features, active session, segments (profiles);
``persona:profile:<profile id>:cluster``
    the profile's cluster segment: id, label, distance to the centre, since (clusters);
``persona:clusters``
    every cluster segment of the model: segment id -> ``{"label", "cluster"}`` (clusters);
``persona:segment:<segment id>``
    a SET of the profile ids in the segment, rule or cluster (profiles, clusters): its
    SCARD is the segment's size. Written by SADD/SREM from each ``segment-changes``
    record (:func:`membership_update`), idempotent under replay.

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
>>> membership_update({"segment_id": "vip", "profile_id": "p-1", "change": "exited"})
('persona:segment:vip', 'p-1', False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from app.clusters import state as cluster_stage
from app.identity.hashing import profile_id_for
from app.identity.stream import PREFIXES, profile_summary
from app.ingest import activity
from app.profiles import merges as profile_identity
from app.profiles import state as profile_stage
from app.segments import membership

Fields = dict[str, str | int | float]
Entry = tuple[str, Fields]

ACTIVITY = "persona:activity:"
IDENTITY = "persona:identity:"
PROFILE = "persona:profile:"
CLUSTERS = "persona:clusters"
SEGMENT = "persona:segment:"

#: The tables whose values hold serving state, in the order a rebuild applies them: an anonymous
#: id's lookup key from ``identity_alias`` after the one its profile's ``identity`` entry writes.
TABLES = ("identity", "identity_alias", "activity", "profiles", "clusters")

#: The key families, as ``persona rebuild-redis`` counts them.
FAMILIES = ("activity", "identity", "profile_identity", "profile_cluster", "profile", "clusters", "segment")


def flatten(summary: Mapping[str, Any]) -> dict[str, str | int | float]:
    """Redis hash fields of a summary: scalars as they are, the rest as JSON, ``None`` left out.

    >>> flatten({"events": 3, "counts": {"page_view": 3}, "first_seen": None})
    {'events': 3, 'counts': '{"page_view":3}'}
    """
    return {
        name: value if isinstance(value, int | float | str) else orjson.dumps(value).decode()
        for name, value in summary.items()
        if value is not None
    }


def family(redis_key: str) -> str:
    """The family of a serving key (one of :data:`FAMILIES`).

    >>> keys = ("persona:activity:h", "persona:identity:h", "persona:profile:p:identity", "persona:profile:p",
    ...         "persona:profile:p:cluster", "persona:clusters", "persona:segment:vip")
    >>> [family(k) for k in keys]
    ['activity', 'identity', 'profile_identity', 'profile', 'profile_cluster', 'clusters', 'segment']
    """
    if redis_key.startswith(ACTIVITY):
        return "activity"
    if redis_key.startswith(IDENTITY):
        return "identity"
    if redis_key == CLUSTERS:
        return "clusters"
    if redis_key.startswith(SEGMENT):
        return "segment"
    if redis_key.startswith(PROFILE) and redis_key.endswith(":identity"):
        return "profile_identity"
    if redis_key.startswith(PROFILE) and redis_key.endswith(":cluster"):
        return "profile_cluster"
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
    if table == "clusters":
        return [f"{PROFILE}{key}:cluster"]
    if table == "identity_alias":
        return [f"{IDENTITY}{key}"]
    if table == "identity" and key.startswith(PREFIXES["profiles"]):
        return [f"{PROFILE}{key[len(PREFIXES['profiles']):]}:identity"]
    return []


def profile_now(value: Mapping[str, Any], default: float) -> float:
    """The stream time a rebuild serves a profile at: its last event time, else ``default``."""
    last = value.get("profile", {}).get("last_seen")
    return float(last) if isinstance(last, int | float) else default


def cluster_entries(profile_id: str, entry: Mapping[str, Any] | None) -> list[Entry]:
    """A profile's cluster segment (the clusters table's membership); no key before it has one.

    >>> entry = {"members": {"segments": {"cluster-2": {"kind": "cluster", "since": 5.0,
    ...          "reason": {"cluster": 2, "label": "frequent", "distance": 0.7, "nearest_cluster": 0}}}}}
    >>> [(key, f["segment_id"], f["label"], f["distance"]) for key, f in cluster_entries("p-1", entry)]
    [('persona:profile:p-1:cluster', 'cluster-2', 'frequent', 0.7)]
    """
    current = cluster_stage.current_segment(entry)
    if current is None:
        return []
    seg, m = current
    reason = m.get("reason") or {}
    fields: Fields = {"segment_id": seg, "cluster": reason.get("cluster", ""), "label": reason.get("label", ""),
                      "distance": reason.get("distance", ""), "since": m["since"]}
    return [(f"{PROFILE}{profile_id}:cluster", fields)]


def clusters_entry(catalogue: Mapping[str, Mapping[str, Any]]) -> Entry:
    """The catalogue of cluster segments (:func:`app.clusters.state.catalogue`), one hash."""
    return CLUSTERS, {seg: orjson.dumps(dict(info)).decode() for seg, info in catalogue.items()}


def segment_key(segment_id: str) -> str:
    """The Redis set of a segment's profile ids."""
    return f"{SEGMENT}{segment_id}"


def membership_update(change: Mapping[str, Any]) -> tuple[str, str, bool]:
    """(set key, profile id, member?) of one ``segment-changes`` record, for SADD/SREM."""
    return segment_key(str(change["segment_id"])), str(change["profile_id"]), change["change"] == "entered"


def segment_memberships(table: str, profile_id: str, value: Mapping[str, Any]) -> list[str]:
    """The segment set keys a table value puts ``profile_id`` in (``profiles``: rules; ``clusters``).

    >>> segment_memberships("clusters", cluster_stage.MODEL_KEY, {}), segment_memberships("activity", "h1", {})
    ([], [])
    """
    if table == "clusters" and profile_id == cluster_stage.MODEL_KEY:
        return []
    if table == "profiles":
        segs = membership.segments(value.get("segments", {}).get("members"))
        return [segment_key(s) for s, m in sorted(segs.items()) if m["kind"] == "rule"]
    if table == "clusters":
        return [segment_key(s) for s in cluster_stage.segment_ids(value)]
    return []


def table_entries(table: str, key: str, value: Any, now: float, aliases: Mapping[str, Any]) -> list[Entry]:
    """The serving keys of one entry of ``table`` (one of :data:`TABLES`), as its agent puts them.

    The one function ``persona rebuild-redis`` (values from the changelogs) and the worker's
    self-heal (values from its own tables, :mod:`app.runtime.redis_heal`) both serve entries with.
    ``aliases``: the identity_alias table (an activity key carries its anonymous id's current
    profile, else the id the anonymous id's own profile gets); ``now``: the stream time a
    profile without events is served at. Keys that are not state (watermarks) give nothing.

    >>> table_entries("identity_alias", "h1", {"profile_id": "p-1"}, 0.0, {})
    [('persona:identity:h1', {'profile_id': 'p-1'})]
    >>> value = {"events": 1, "first_seen": 1.0, "last_seen": 1.0, "counts": {}, "offset": 3}
    >>> table_entries("activity", "h1", value, 0.0, {"h1": {"profile_id": "p-9"}})[0][1]["profile_id"]
    'p-9'
    >>> table_entries("identity", "m/h1", {"x": 1}, 0.0, {}), table_entries("dedupe", "k", {}, 0.0, {})
    ([], [])
    """
    if table == "identity":
        return identity_entries(key, value)
    if table == "identity_alias":
        return alias_entries(key, value)
    if table == "activity":
        alias = aliases.get(key)
        return activity_entries(key, value, str(alias["profile_id"]) if alias else profile_id_for(key))
    if table == "profiles":
        return profile_entries(key, value, profile_now(value, now))
    if table == "clusters" and key == cluster_stage.MODEL_KEY:
        model = cluster_stage.restore(value, cluster_stage.ClusterConfig())
        return [clusters_entry(cluster_stage.catalogue(model))]
    if table == "clusters":
        return cluster_entries(key, value)
    return []
