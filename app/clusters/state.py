"""Cluster segments in the stream: one online model for all profiles, per-profile memberships.

The profiles stage sends a profile's feature vector (:func:`~app.profiles.cluster_input.cluster_input`) to the
one-partition internal topic ``<app_id>-cluster-input`` when one of its sessions closes,
not per event: a session is the unit of behaviour the archetypes differ by, and it keeps
the model's input small. The clusters stage (``agents/clusters.py``) folds each record
into :class:`ClusterState` with :func:`step`:

* the model (:class:`app.clusters.model.ClusterModel`) learns the vector and the
  profile is assigned a cluster with hysteresis; ``segment-changes`` records (kind
  ``cluster``, reason: cluster id, label, distance to the centre, nearest other cluster)
  come from :func:`app.segments.membership.diff`;
* one table (``clusters``, one partition) holds the per-profile membership under the
  profile id and the model checkpoint under :data:`MODEL_KEY`, so ids are global and one
  changelog and one watermark cover both.

Exactness under replay
    The model checkpoint (:func:`checkpoint`) is written with the table's watermark
    (every ``watermark_every`` records), and carries the last input offset it learned.
    After a restart the model is the checkpoint, the input is rewound to the watermark + 1
    (:mod:`tables.exact`) and the records since are learned again: learning is
    deterministic (seeded, RNG states in the checkpoint), so the model ends where it
    was. A record at or below the model's offset is not learned again. A membership
    carries the offset it reflects, so a replayed record changes no membership and emits
    nothing. An upstream duplicate (the profiles stage re-sending a closed session after
    its own replay, at a new offset) is recognised by its ``input_id`` (the session id)
    in the profile's recent inputs and is neither learned nor assigned; the offset it
    was first seen at is kept so a replay of that first offset is still learned.

Examples
--------
>>> state = new_state(ClusterConfig(k=2, warmup=4))
>>> docs = [{"profile_id": f"p-{i}", "input_id": f"s-{i}", "at": 60.0 * i,
...          "vector": {"orders_decayed": float(i % 2) * 5}} for i in range(6)]
>>> entry, changes = None, []
>>> for offset, doc in enumerate(docs):
...     entry, changes = step(state, None, doc, offset)
>>> [(c["segment_id"], c["change"], c["segment_kind"]) for c in changes]
[('cluster-0', 'entered', 'cluster')]
>>> step(state, entry, docs[-1], 5)        # the same offset again: nothing
(None, [])
>>> restored = restore(checkpoint(state), ClusterConfig(k=2, warmup=4))
>>> restored.model.centres() == state.model.centres(), restored.offset
(True, 5)
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.clusters.model import ClusterModel
from app.events.validation import Rejection
from app.profiles import features

# The records the profiles stage sends here (app/profiles/cluster_input.py), still named from here.
from app.profiles.cluster_input import cluster_input as cluster_input
from app.profiles.cluster_input import merge_record as merge_record
from app.segments import membership
from app.segments.evaluate import Decision
from tables.hooks import KeepOnSplit, State, register

log = logging.getLogger(__name__)

#: Table key of the model checkpoint (profile ids never start with ``__``).
MODEL_KEY = "__model__"
#: How many recent input ids a profile's membership remembers to drop upstream duplicates.
RECENT_INPUTS = 16


#: The profile features the model clusters on: behaviour (recency, frequency, spend, engagement,
#: e-mail, carts, bot flag). Category affinities and device shares are left out: they say what
#: and on what a customer shops, not how, and with them the clusters matched the simulator's
#: behaviours much worse (batch k-means ARI 0.4560 with all 28 features against 0.7311 with
#: these 13; docs/benchmarks.md).
#: They stay in the served profile and drive the ``interest:*`` rules.
CLUSTER_FEATURES: tuple[str, ...] = tuple(
    n for n in features.vector_names() if not n.startswith(("affinity:", "device_"))
)


@dataclass(frozen=True)
class ClusterConfig:
    """How the stream's model is built (``PERSONA_CLUSTER_*`` settings).

    ``k=None`` chooses k by silhouette in ``k_range`` on the warm-up sample; the default
    is the simulator's six archetypes, because the benchmark found silhouette prefers
    fewer clusters than there are behaviours (``docs/benchmarks.md``, Segmentation).
    ``reseed_every``: the centres are re-seeded from the last 1,000 vectors every 1,000
    vectors (ids kept by Hungarian matching), which the benchmark found brings online k-means
    from 0.79 to 0.92 of batch k-means' ARI; its window is part of the checkpoint
    (1,000 x 13 floats, about 0.4 MB in all), so it cannot grow much under Kafka's 1 MB record limit.
    """

    k: int | None = 6
    warmup: int = 500
    reseed_every: int = 1000
    features: tuple[str, ...] = CLUSTER_FEATURES
    margin: float = 0.1
    halflife: float = 0.02
    seed: int = 0


@dataclass
class ClusterState:
    """The live model and the last input offset it learned (-1: none)."""

    model: ClusterModel
    offset: int = -1


def new_state(config: ClusterConfig) -> ClusterState:
    """A fresh, untrained model over ``config.features`` of the profile feature vector."""
    return ClusterState(
        ClusterModel(
            config.features, k=config.k, warmup=config.warmup, reseed_every=config.reseed_every,
            margin=config.margin, halflife=config.halflife, seed=config.seed,
        )
    )


def checkpoint(state: ClusterState) -> dict[str, Any]:
    """The table value under :data:`MODEL_KEY`: the whole model and its offset, plain JSON.

    A deep copy: ``to_json`` shares the model's lists (reservoir, buffer), which go on
    changing after the value is in the table.
    """
    return {"offset": state.offset, "model": copy.deepcopy(state.model.to_json())}


def restore(value: Mapping[str, Any] | None, config: ClusterConfig) -> ClusterState:
    """The model of a checkpoint, or a fresh one when there is none.

    A checkpoint always wins over ``config``: re-initialising a trained model because a
    setting changed would silently renumber every cluster. Changing k on a running
    deployment is a migration (drop the ``clusters`` table), said in the warning.
    """
    if value is None:
        return new_state(config)
    state = ClusterState(ClusterModel.from_json(value["model"]), int(value["offset"]))
    if state.model.k != config.k or state.model.warmup != config.warmup:
        log.warning(
            "cluster model restored with k=%s warmup=%s, not the configured k=%s warmup=%s; "
            "the checkpoint is kept (drop the clusters table to start a new model)",
            state.model.k, state.model.warmup, config.k, config.warmup,
        )
    return state


def parse_input(raw: bytes) -> dict[str, Any] | Rejection:
    """A ``cluster-input`` record, or why it cannot be used (dead-lettered, never a crash).

    >>> parse_input(b'{"profile_id": "p-1", "input_id": "s", "at": 1.0, "vector": {"aov": 2.5}}')["vector"]
    {'aov': 2.5}
    >>> parse_input(b'{"profile_id": "p-1", "input_id": "s", "at": 1.0, "vector": {"aov": "x"}}').code
    'schema_violation'
    >>> parse_input(b"[1]").code, parse_input(b"{").code
    ('not_an_object', 'invalid_json')
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("invalid_json", f"not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return Rejection("not_an_object", "a cluster-input record must be a JSON object")
    merge = "merged_into" in doc  # an identity merge (app.profiles.merges), not a vector
    fields: tuple[tuple[str, Any], ...] = (
        (("profile_id", str), ("merged_into", str), ("change_id", str), ("at", int | float)) if merge
        else (("profile_id", str), ("input_id", str), ("at", int | float), ("vector", dict))
    )
    for name, kinds in fields:
        if not isinstance(doc.get(name), kinds) or isinstance(doc.get(name), bool):
            return Rejection("schema_violation", f"{name} is missing or of the wrong type", name)
    if merge:
        return doc
    bad = next((k for k, v in doc["vector"].items()
                if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v)), None)
    if bad is not None:
        return Rejection("schema_violation", f"vector[{bad!r}] must be a finite number", f"vector.{bad}")
    return doc


def step(
    state: ClusterState, entry: State | None, doc: Mapping[str, Any], offset: int
) -> tuple[State | None, list[dict[str, Any]]]:
    """Fold one ``cluster-input`` record at ``offset`` into the model and the profile's membership.

    ``state`` (the model) is updated in place; ``entry`` (the profile's membership,
    ``None`` if it has none) is not. Returns the new membership (``None``: unchanged)
    and the ``segment-changes`` records to emit.
    """
    profile_id = str(doc["profile_id"])
    input_id = str(doc["input_id"])
    vector = doc["vector"]
    recent: dict[str, int] = dict(entry["inputs"]) if entry else {}
    first_seen_at = recent.get(input_id)
    duplicate = first_seen_at is not None and first_seen_at != offset
    if offset > state.offset:
        if not duplicate:
            state.model.learn_one(vector)
        state.offset = offset
    if duplicate or (entry is not None and entry["offset"] >= offset):
        return None, []
    current = entry["cluster"] if entry else None
    decision = state.model.decision(vector, current)
    decisions = {} if decision is None else {decision.segment_id: decision}
    members, changes = membership.diff(
        profile_id, entry["members"] if entry else None, decisions, float(doc["at"]),
        f"cluster-input:{offset}", kinds=("cluster",),
    )
    recent[input_id] = offset
    return {
        "cluster": None if decision is None else decision.reason["cluster"],
        "members": members,
        "offset": offset,
        "inputs": dict(list(recent.items())[-RECENT_INPUTS:]),
        "at": float(doc["at"]),
    }, changes


def absorb(
    surviving: State | None, absorbed: State | None, doc: Mapping[str, Any], offset: int
) -> tuple[State | None, list[dict[str, Any]]]:
    """An identity merge at ``offset``: the absorbed profile leaves its cluster, the survivor keeps its own.

    Returns the survivor's new membership (``None``: unchanged) and the changes: the
    absorbed profile's exit (reason ``merged_into``), and the survivor's entry into the
    absorbed one's cluster if it had none (:class:`ClusterHooks`). The shell deletes the
    absorbed entry; a replay then finds nothing to absorb.

    >>> m = {"segments": {"cluster-2": {"kind": "cluster", "since": 5.0, "reason": {"cluster": 2}}}}
    >>> b = {"cluster": 2, "members": m, "offset": 3, "inputs": {"s1": 3}, "at": 5.0}
    >>> doc = merge_record("p-b", "p-a", "chg-1", 9.0)
    >>> a, changes = absorb(None, b, doc, offset=7)
    >>> a["cluster"], a["offset"], [(c["profile_id"], c["segment_id"], c["change"]) for c in changes]
    (2, 7, [('p-b', 'cluster-2', 'exited'), ('p-a', 'cluster-2', 'entered')])
    >>> absorb(a, None, doc, offset=7)
    (None, [])
    """
    if absorbed is None:
        return None, []
    surviving_id, at = str(doc["merged_into"]), float(doc["at"])
    basis = f"identity:{doc['change_id']}"
    if surviving is not None and surviving["offset"] >= offset:
        # A replay after the survivor's side was written: only the absorbed exit is left to do
        # (the same change id as before).
        _, changes = membership.merge_changes(surviving_id, None, {str(doc["profile_id"]): absorbed["members"]},
                                              {}, at, basis, kinds=("cluster",))
        return None, changes
    merged = HOOKS.merge(surviving, absorbed) if surviving is not None else dict(absorbed)
    segment = current_segment(merged)
    decisions = {} if segment is None else {
        segment[0]: Decision(segment[0], "cluster", dict(segment[1].get("reason") or {"cluster": merged["cluster"]}))
    }
    members, changes = membership.merge_changes(
        surviving_id, surviving["members"] if surviving else None, {str(doc["profile_id"]): absorbed["members"]},
        decisions, at, basis, kinds=("cluster",),
    )
    return {**merged, "members": members, "offset": offset}, changes


def current_segment(entry: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """(segment id, membership) of the profile's cluster segment, ``None`` without one."""
    if not entry:
        return None
    for seg, m in membership.segments(entry["members"]).items():
        if m["kind"] == "cluster":
            return seg, m
    return None


def segment_ids(entry: Mapping[str, Any] | None) -> list[str]:
    """The cluster segment ids a membership holds (none or one)."""
    current = current_segment(entry)
    return [] if current is None else [current[0]]


def catalogue(state: ClusterState) -> dict[str, dict[str, Any]]:
    """Segment id -> ``{"kind": "cluster", "label", "cluster"}`` for every centre of the model."""
    return {f"cluster-{cid}": {"kind": "cluster", "label": label, "cluster": cid}
            for cid, label in state.model.labels().items()}


def describe(state: ClusterState) -> dict[str, Any]:
    """The live model for operators and tests: offset, vectors learned, ids, labels, centres (standardised)."""
    model = state.model
    return {"offset": state.offset, "seen": model.seen, "ready": model.ready, "k": len(model.ids),
            "features": list(model.features), "labels": {str(c): lab for c, lab in model.labels().items()},
            "centres": {str(c): v for c, v in model.centres().items()}, "next_id": model.next_id}


class ClusterHooks(KeepOnSplit[State]):
    """Identity merges: the survivor keeps its cluster; it takes the absorbed one's if it had none.

    A profile belongs to one cluster, so memberships are not unioned; the survivor's
    next closed session re-assigns it from the merged profile's vector. Recent input
    ids of both are kept, so neither side's sessions are learned twice. Erase deletes.
    """

    def merge(self, surviving: State, absorbed: State) -> State:
        base = surviving if surviving.get("cluster") is not None else absorbed
        inputs = {**absorbed.get("inputs", {}), **surviving.get("inputs", {})}
        return {**base, "inputs": dict(list(inputs.items())[-RECENT_INPUTS:]),
                "offset": max(surviving["offset"], absorbed["offset"])}


HOOKS = register("clusters", ClusterHooks())
