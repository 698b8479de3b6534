"""Stage 3, profiles: sessions and the unified profile of each profile_id.

<app_id>-profile-events (keyed by profile_id, from ingest) ──► profiles table ──► Redis persona:profile:<id>
                                                         ├──► session-summaries (closed sessions)
                                                         ├──► segment-changes (rule segments entered/exited)
                                                         └──► <app_id>-cluster-input (feature vector per closed session)
tick records (sent by a timer into each owned partition)  ──► close idle sessions, fire timed segment rules
                                                            (a tick that visits its whole limit sends the next at once)
identity-changes ──► profiles-identity ──► merge_out / split records (keyed by the profile that must act)
merge_out at B ──► merge_in at A (B's state) ──► B becomes a tombstone {"merged_into": A}
identity stage (CRM records) ──► traits records (age band, city, state, country)

Ingest sends events in packs, one record per partition per batch (app/profiles/pack.py); each
event of a pack is applied as its own record, at its own position.

Ticks travel through the same partition as the events, so closing sessions happens in
stream order, inside the stream (where table writes reach the right changelog partition).
Merges travel the same way: the partition that owns a state is the only one that reads or
writes it (app/profiles/merges.py has the record kinds and their exactness).

Records are taken in batches (``PERSONA_PROFILES_BATCH_SIZE`` / ``_SECONDS``) and folded by
app/profiles/fold.py; this module only carries a batch's effects out, in the order
that keeps them exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import orjson
from faust import Stream
from faust.types import TP, EventT, StreamT

from agents.ingest import send_dead_letter
from app.events.validation import processing_error
from app.profiles import fold as profile_batch
from app.profiles import merges as profile_identity
from app.runtime.faust_app import (
    cluster_input_topic,
    faust_app,
    output_topics,
    profile_events_topic,
    segment_changes_topic,
    session_summaries_topic,
    settings,
)
from app.runtime.lifecycle import redis_sink
from app.runtime.metrics import (
    DUPLICATES,
    END_TO_END_SECONDS,
    PROFILE_REDIRECTS,
    SEGMENT_CHANGES,
    SESSION_LATE_EVENTS,
    SESSIONS_CLOSED,
    STAGE_SECONDS,
    TICK_INDEX_SCANNED,
)
from app.runtime.tables import profiles_table
from app.serving import keys as serving
from tables.rocksdb_store import RocksDBStore

TICK_SECONDS = 5.0
identity_changes_topic = output_topics[settings.topics.identity_changes]
PROFILE_EVENTS = settings.profile_events_topic
OUTPUT_TOPICS = {
    "session_summaries": session_summaries_topic,
    "cluster_input": cluster_input_topic,
    "segment_changes": segment_changes_topic,
}
PROFILES_SECONDS = STAGE_SECONDS.labels("profiles")
# Stream clocks, quality monitor and tick index of the partitions this worker owns.
memory = profile_batch.StageMemory(
    tick_limit=settings.profiles_tick_limit, tick_evaluations=settings.profiles_tick_evaluations
)


@faust_app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust's stub wants a signal keyword
async def on_assigned(app: Any, assigned: set[TP], **kwargs: Any) -> None:
    # `assigned` is the whole new assignment: a partition given back after a rebalance has a
    # recovered table the old tick index knows nothing of, so the index is rebuilt on next use.
    if any(tp.topic == PROFILE_EVENTS for tp in assigned):
        memory.forget_index()


@faust_app.agent(profile_events_topic, name="profiles")
async def update_profiles(stream: StreamT) -> None:
    # Batches write each changed profile (several kB of JSON, one changelog record) once per
    # batch instead of once per event. Faust acks a batch's offsets after this body returns.
    batches = cast(Stream, stream).take_events(settings.profiles_batch_size, within=settings.profiles_batch_seconds)
    async for batch in batches:
        # Only records contiguous with what the states reflect (tables/exact.py admit).
        records = await profiles_table.contiguous(batch)
        # Packs carry many events each: fold at most a batch size of events at a time.
        folded = [profile_batch.Record(r.message.topic, r.message.partition, r.message.offset, r.value)
                  for r in records]
        start = 0
        while start < len(records):
            start += await apply_batch(records[start:], folded[start:])
        profiles_table.applied_through()


async def apply_batch(records: Sequence[EventT], folded: Sequence[profile_batch.Record]) -> int:
    """Fold the first records of ``records`` (app/profiles/fold.py, at most a batch size of events)
    and carry them out: handovers acknowledged, then the states written once each, the outputs sent
    (each holding the watermark), the watermark, Redis. Returns how many records it took."""
    started = time.perf_counter()
    if memory.sorted_index is None and isinstance(profiles_table.data, RocksDBStore):
        memory.sorted_index = profiles_table.data  # ticks read its due keys in order, nothing in memory
    batch = profile_batch.fold(
        folded, profiles_table, memory, wall=time.time(), max_folded=settings.profiles_batch_size
    )
    # A state that records a handover (a tombstone, a split) is written only once the broker
    # has the handover: a crash before this point replays the records, which send it again.
    await asyncio.gather(*[await send_profile_record(envelope) for envelope in batch.handovers])
    for index, rejection in batch.rejected:
        profiles_table.hold_watermark_for(await send_dead_letter(records[index], rejection))
    # Tick-index keys before the values they describe, in the same changelog partitions: a crash
    # between the two leaves a due key ahead of its value (replayed, rewritten), never behind it.
    for key, (index_value, partition) in batch.index_writes.items():
        if index_value is None:
            profiles_table.discard(key, partition)
        else:
            profiles_table.put(key, index_value, partition)
    for profile_id, (value, partition) in batch.pending.items():
        profiles_table.put(profile_id, value, partition)
    for kind, key, doc in batch.outputs:
        delivery = await OUTPUT_TOPICS[kind].send(key=key.encode(), value=orjson.dumps(doc))
        profiles_table.hold_watermark_for(delivery)
        count_output(kind, doc)
    for partition, (offset, count) in batch.last_offsets.items():
        await profiles_table.applied(partition, offset, records=count)
    for profile_id, (value, now) in batch.served.items():
        for redis_key, fields in serving.profile_entries(profile_id, value, now):
            redis_sink.put(redis_key, fields)
    for duplicate, n in batch.duplicates.items():
        DUPLICATES.labels(PROFILE_EVENTS, duplicate).inc(n)
    for cause, n in batch.redirects.items():
        PROFILE_REDIRECTS.labels(cause).inc(n)
    for route, n in batch.late_events.items():
        SESSION_LATE_EVENTS.labels(route).inc(n)
    TICK_INDEX_SCANNED.inc(batch.index_scanned)
    for partition in sorted(batch.ticks_to_follow):  # a backlog of due profiles: the next tick now
        await send_tick(partition)
    done = time.time()
    for produced in batch.produced_at:
        END_TO_END_SECONDS.observe(max(0.0, done - produced))
    # One observation per record (each event of a pack), not per batch: the histogram's count is
    # read as the records this stage has applied (bench/throughput.py waits on it to know the
    # pipeline is done).
    per_record = (time.perf_counter() - started) / max(1, batch.folded)
    for _ in range(batch.folded):
        PROFILES_SECONDS.observe(per_record)
    return batch.records


def count_output(kind: str, doc: dict[str, Any]) -> None:
    if kind == "session_summaries":
        SESSIONS_CLOSED.labels(doc["close_reason"]).inc()
    elif kind == "segment_changes":
        SEGMENT_CHANGES.labels(doc["segment_kind"], doc["change"]).inc()
        redis_sink.set_member(*serving.membership_update(doc))


async def send_profile_record(envelope: dict[str, Any]) -> Awaitable[Any]:
    """Send a record to the profile's partition of profile-events; return the broker's ack to await."""
    return await profile_events_topic.send(
        key=str(envelope["profile_id"]).encode(), value=orjson.dumps(envelope), force=True
    )


@faust_app.timer(TICK_SECONDS)
async def send_ticks() -> None:
    """Put a tick into every profile-events partition this worker owns."""
    owned = [tp.partition for tp in faust_app.consumer.assignment() if tp.topic == settings.profile_events_topic]
    for partition in owned:
        await send_tick(partition)


async def send_tick(partition: int) -> None:
    await profile_events_topic.send(key=b"tick", value=orjson.dumps({"tick": time.time()}), partition=partition)


@faust_app.agent(identity_changes_topic, name="profiles-identity")
async def follow_identity_changes(stream: StreamT) -> None:
    """Turn each merge or split into records for the partitions that own the profiles concerned.

    Stateless: a replayed change sends the same records again, and every step downstream
    is idempotent by the change id (app/profiles/merges.py).
    """
    async for record in stream.events():
        try:
            change = orjson.loads(record.value)
            sends = profile_identity.control_records(change)
        except Exception as exc:  # a change this stage cannot turn into records: dead-lettered, the stage goes on
            await (await send_dead_letter(record, processing_error("profiles-identity", exc)))
            continue
        for _, envelope in sends:
            await (await send_profile_record(envelope))
