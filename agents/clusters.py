"""Stage 4, clusters: one online model of all profiles, cluster segments with global ids.

<app_id>-cluster-input (1 partition; a profile's feature vector per closed session, from profiles)
    ──► model (learn, assign with hysteresis) ──► clusters table (1 partition): membership per profile,
                                                   model checkpoint under "__model__"
        ├──► segment-changes (kind cluster: entered / exited, reason = distance to the centre)
        └──► Redis persona:profile:<id>:cluster, persona:clusters, persona:segment:<id> (SADD/SREM)

The model lives in memory on the worker that owns the one partition. It is loaded from
the table's checkpoint at the first record after recovery (or taken again from it after
a rebalance when the checkpoint is newer, see :func:`model_state`) and saved just before
each watermark write, so a worker that gets the partition (restart or rebalance) goes on
from the checkpoint, never from an empty model. Exactness is in :mod:`app.clusters.state`.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import orjson
from faust.types import TP, StreamT

from agents.ingest import send_dead_letter
from app.clusters import state as cluster_stage
from app.events.validation import Rejection, processing_error
from app.runtime.faust_app import cluster_input_topic, faust_app, segment_changes_topic, settings
from app.runtime.lifecycle import redis_sink
from app.runtime.metrics import (
    CLUSTER_DRIFT,
    CLUSTER_INPUTS,
    CLUSTER_K,
    CLUSTER_LEARNED,
    CLUSTER_SAMPLE_SHARE,
    CLUSTER_SILHOUETTE,
    DUPLICATES,
    SEGMENT_CHANGES,
    STAGE_SECONDS,
)
from app.runtime.tables import clusters_table
from app.serving import keys as serving

CONFIG = cluster_stage.ClusterConfig(k=settings.cluster_k or None, warmup=settings.cluster_warmup)
QUALITY_SECONDS = 30.0
INPUT = settings.cluster_input_topic

# The model of the cluster-input partition, kept across rebalances (see model_state).
live: cluster_stage.ClusterState | None = None
# Set when partitions are assigned: the next use compares the live model with the table's checkpoint.
recheck = True


def model_state() -> cluster_stage.ClusterState:
    """The live model; loaded from the table's checkpoint at start, or after an assignment if it is newer.

    The live model is not dropped when the partition is revoked: if the partition stays (a
    rebalance that gives it back at once) its table is not recovered nor its input rewound,
    and the live model, ahead of the last checkpoint, is the only copy of the records
    learned since. If another worker owned it meanwhile and checkpointed further, the
    checkpoint is newer and wins; otherwise the rewind to the watermark + 1 (written with
    the checkpoint) re-reads whatever the live model has not learned, and what it has is
    not learned twice (``app.clusters.state.step`` skips offsets at or below its own).
    """
    global live, recheck
    if live is None or recheck:
        saved = clusters_table.get(cluster_stage.MODEL_KEY)
        if live is None or (saved is not None and int(saved["offset"]) > live.offset):
            live = cluster_stage.restore(saved, CONFIG)
        recheck = False
    return live


@faust_app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust's stub wants a signal keyword
async def on_assigned(app: Any, assigned: set[TP], **kwargs: Any) -> None:
    global recheck
    if any(tp.topic == INPUT for tp in assigned):
        recheck = True


def owned_model() -> cluster_stage.ClusterState | None:
    """The model if this worker owns the cluster-input partition and has recovered its table, else None."""
    owns = any(tp.topic == INPUT for tp in faust_app.consumer.assignment())
    # `completed` stays set from the first recovery; a later rebalance's recovery shows in the flags.
    recovered = bool(cast(Any, faust_app.tables).recovery.completed.is_set())
    busy = bool(getattr(faust_app, "in_recovery", False) or faust_app.rebalancing)
    return model_state() if owns and recovered and not busy else None


def save_checkpoint(partition: int) -> None:
    # Called by the table just before it writes the watermark: the checkpoint reflects every
    # offset the watermark will claim.
    if live is not None:
        clusters_table[cluster_stage.MODEL_KEY] = cluster_stage.checkpoint(live)


clusters_table.before_watermark = save_checkpoint


@faust_app.agent(cluster_input_topic, name="clusters")
async def clusters(stream: StreamT) -> None:
    async for record in stream.events():
        if not await clusters_table.contiguous([record]):
            continue  # past a gap after a recovery: sought back, it comes again (tables/exact.py admit)
        started = time.perf_counter()
        message = record.message
        doc = cluster_stage.parse_input(record.value)
        if not isinstance(doc, Rejection):
            # A record the stage's code fails on comes back as its rejection; the stage goes on.
            doc = await (absorb(doc, message.offset) if "merged_into" in doc else apply(doc, message.offset)) or doc
        if isinstance(doc, Rejection):
            clusters_table.hold_watermark_for(await send_dead_letter(record, doc))
        await clusters_table.applied(message.partition, message.offset)
        clusters_table.applied_through()
        STAGE_SECONDS.labels("clusters").observe(time.perf_counter() - started)


async def apply(doc: dict[str, Any], offset: int) -> Rejection | None:
    state = model_state()
    profile_id = str(doc["profile_id"])
    entry = clusters_table.get(profile_id)
    labels_before = state.model.labels()
    try:
        new_entry, changes = cluster_stage.step(state, entry, doc, offset)
    except Exception as exc:  # validated input the stage's code still fails on: a bug, not a halt
        return processing_error("clusters", exc)
    CLUSTER_LEARNED.set(state.model.seen)
    if state.model.labels() != labels_before:  # replayed records move centres too
        redis_sink.put(*serving.clusters_entry(cluster_stage.catalogue(state)))
    if new_entry is None:
        outcome = "replayed" if entry is not None and entry["offset"] >= offset else "duplicate"
        CLUSTER_INPUTS.labels(outcome).inc()
        if outcome == "replayed":
            DUPLICATES.labels(INPUT, "offset").inc()
        return None
    CLUSTER_INPUTS.labels("assigned").inc()
    await emit(changes)
    clusters_table[profile_id] = new_entry
    for redis_key, fields in serving.cluster_entries(profile_id, new_entry):
        redis_sink.put(redis_key, fields)
    return None


async def absorb(doc: dict[str, Any], offset: int) -> Rejection | None:
    """An identity merge: the absorbed profile's membership goes, the survivor keeps or takes a cluster."""
    absorbed_id, surviving_id = str(doc["profile_id"]), str(doc["merged_into"])
    absorbed = clusters_table.get(absorbed_id)
    try:
        survivor, changes = cluster_stage.absorb(clusters_table.get(surviving_id), absorbed, doc, offset)
    except Exception as exc:
        return processing_error("clusters", exc)
    await emit(changes)
    if survivor is not None:
        clusters_table[surviving_id] = survivor
        for redis_key, fields in serving.cluster_entries(surviving_id, survivor):
            redis_sink.put(redis_key, fields)
    if absorbed is not None:
        # Its Redis cluster key is left to expire: the profile API redirects an absorbed id.
        del clusters_table[absorbed_id]
    CLUSTER_INPUTS.labels("merged" if absorbed is not None else "duplicate").inc()
    return None


async def emit(changes: list[dict[str, Any]]) -> None:
    for change in changes:
        key = str(change["profile_id"]).encode()
        delivery = await segment_changes_topic.send(key=key, value=orjson.dumps(change), force=True)
        clusters_table.hold_watermark_for(delivery)
        SEGMENT_CHANGES.labels(change["segment_kind"], change["change"]).inc()
        redis_sink.set_member(*serving.membership_update(change))


@faust_app.timer(QUALITY_SECONDS)
async def export_quality() -> None:
    """Silhouette, sample shares and centre drift of the live model, as Prometheus gauges."""
    state = owned_model()
    if state is None or not state.model.ready:
        return
    quality = state.model.quality()
    CLUSTER_K.set(quality["k"])
    CLUSTER_SILHOUETTE.set(quality["silhouette"] if not math.isnan(quality["silhouette"]) else 0.0)
    total = sum(quality["sizes"].values()) or 1
    CLUSTER_SAMPLE_SHARE.clear()  # retired clusters must not keep their last value
    for cid, n in quality["sizes"].items():
        CLUSTER_SAMPLE_SHARE.labels(f"cluster-{cid}").set(n / total)
    CLUSTER_DRIFT.labels("mean").set(quality["drift_mean"])
    CLUSTER_DRIFT.labels("max").set(quality["drift_max"])
