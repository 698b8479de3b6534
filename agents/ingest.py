"""Stage 1, ingest: validate every input record, dead-letter the bad ones, apply the good ones.

clickstream ──► validate ──► activity table (per anonymous id) ──► Redis (with profile_id)
                   ├──────► <app_id>-profile-events (every applied event, one pack per partition per batch)
                   ├──────► <app_id>-identity-input (only what is new identity information)
                   └──────► dead-letters (original bytes + reason)
crm-profiles ──► validate ──► <app_id>-identity-input / dead-letters

Forwarding is replay-safe: the activity state remembers what was forwarded for its
anonymous id, and it is written only after the broker acknowledged the forward. A
crash in between forwards the record again, which the resolver absorbs (resolving
the same observation twice changes nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import orjson
from faust import Stream
from faust.types import EventT, StreamT

from app.events.deadletters import dead_letter
from app.events.validation import Rejection
from app.identity.observation import Observation
from app.identity.stream import observation_to_dict
from app.ingest import fold as activity_batch
from app.ingest.fold import Source
from app.profiles import pack as profile_pack
from app.runtime.faust_app import (
    clickstream_topic,
    crm_profiles_topic,
    dead_letters_topic,
    faust_app,
    identity_input_topic,
    profile_events_topic,
    resolver,
    settings,
    validator,
)
from app.runtime.kafka_transport import key_partitioner
from app.runtime.lifecycle import redis_sink
from app.runtime.metrics import (
    DEAD_LETTERS,
    DUPLICATES,
    EVENT_LAG_SECONDS,
    EVENTS_PROCESSED,
    IDENTITY_FORWARDED,
    STAGE_SECONDS,
)
from app.runtime.tables import activity_table, alias_table
from app.serving import keys as serving

CLICKSTREAM = settings.topics.clickstream
CRM = settings.topics.crm_profiles
PROFILE_EVENTS = settings.profile_events_topic
# Label children looked up once: ``labels()`` validates and locks on every call.
INGEST_LAG = EVENT_LAG_SECONDS.labels(CLICKSTREAM)
INGEST_SECONDS = STAGE_SECONDS.labels("ingest")


@faust_app.agent(clickstream_topic, name="ingest-clickstream")
async def ingest_clickstream(stream: StreamT) -> None:
    # Batches cut the per-record costs that are not Faust's own: one table write (and one
    # changelog record) per anonymous id per batch instead of per event, one Redis put per
    # key, metric calls per batch. Faust acks a batch's offsets after this body returns.
    batches = cast(Stream, stream).take_events(settings.ingest_batch_size, within=settings.ingest_batch_seconds)
    async for records in batches:
        await ingest_batch(records)


async def ingest_batch(records: Sequence[EventT]) -> None:
    """Apply a batch of clickstream records (app/ingest/fold.py) and carry out what it does.

    Exactness is the per-record path's: states chain through ``pending`` exactly as they
    would through the table, identity forwards are acknowledged before the states that
    remember them are written, and the watermark moves only after every state write of
    the batch (``applied`` once per partition, for the batch's last offset).
    """
    started = time.perf_counter()
    # Per partition, only records contiguous with what the states reflect (a gap is sought back):
    # after a recovery Faust hands over records from before its seek (tables/exact.py admit).
    records = await activity_table.contiguous(records)
    if not records:
        return
    sources = [Source(r.value, r.message.partition, r.message.offset, r.message.timestamp) for r in records]
    batch = activity_batch.fold(
        sources, activity_table, alias_table, validator, resolver, now=time.time(), dedup_window=settings.dedup_window
    )
    for refused in batch.rejected:
        await send_dead_letter(records[refused.record], refused.rejection, index=refused.batch_index, raw=refused.raw)
    acks = [await forward_event(obs, partition) for obs, partition in batch.forwards]
    acks += await forward_to_profiles(batch.to_profiles)
    # An activity state remembers what was forwarded to identity, and its offset says its events
    # reached the profiles stage: write it only once the broker has every forward and pack (a
    # crash before this point applies the records again; replays of written states send nothing).
    await asyncio.gather(*acks)
    for key, (state, partition) in batch.pending.items():
        activity_table.put(key, state, partition)
    for partition, (offset, count) in batch.last_offsets.items():
        await activity_table.applied(partition, offset, records=count)
    activity_table.applied_through()
    for key, (state, profile_id) in batch.served.items():
        for redis_key, fields in serving.activity_entries(key, state, profile_id):
            redis_sink.put(redis_key, fields)
    for event_type, n in batch.processed.items():
        EVENTS_PROCESSED.labels(CLICKSTREAM, event_type).inc(n)
    for kind, n in batch.duplicates.items():
        DUPLICATES.labels(CLICKSTREAM, kind).inc(n)
    done = time.time()
    for source in sources:
        INGEST_LAG.observe(max(0.0, done - source.timestamp))
    INGEST_SECONDS.observe((time.perf_counter() - started) / len(records))


@faust_app.agent(crm_profiles_topic, name="ingest-crm")
async def ingest_crm(stream: StreamT) -> None:
    # Batches: one wait for the broker's acknowledgements of a batch's forwards, not one per record.
    batches = cast(Stream, stream).take_events(settings.identity_batch_size, within=settings.identity_batch_seconds)
    async for records in batches:
        await ingest_crm_batch(records)


async def ingest_crm_batch(records: Sequence[EventT]) -> None:
    """Forward a batch of CRM records to identity (dead-letter the bad ones); return once the broker has them all.

    ingest-crm keeps no state: a replay forwards the records again, and resolving one
    twice changes nothing. Faust acks the batch's offsets after this returns, so no
    offset is committed before its forward (or dead letter) is acknowledged.
    """
    deliveries: list[Awaitable[Any]] = []
    forwarded = 0
    for record in records:
        forward = activity_batch.crm_forward(record.value, record.message.timestamp, validator, resolver)
        if isinstance(forward, Rejection):
            deliveries.append(await send_dead_letter(record, forward))
            continue
        key, value = forward
        deliveries.append(await identity_input_topic.send(key=key, value=value, force=True))
        forwarded += 1
    await asyncio.gather(*deliveries)
    if forwarded:
        IDENTITY_FORWARDED.labels(CRM).inc(forwarded)
        EVENTS_PROCESSED.labels(CRM, "crm_record").inc(forwarded)


async def forward_to_profiles(records: Sequence[tuple[str, bytes]]) -> list[Awaitable[Any]]:
    """Send a batch's ``(profile_id, record)`` to the profiles stage: packs, one per partition
    (app/profiles/pack.py), each where its profiles' keys hash to, the records in their order.
    Returns the broker's acknowledgements to await.

    A profile-events record per event cost a produce and a consume per event; a pack costs
    them once per partition per batch.
    """
    if not records:
        return []
    partition_for = await key_partitioner(faust_app.producer, PROFILE_EVENTS)
    by_partition: dict[int, list[bytes]] = {}
    partition_of: dict[str, int] = {}
    for profile_id, record in records:
        partition = partition_of.get(profile_id)
        if partition is None:
            partition = partition_of[profile_id] = partition_for(profile_id.encode())
        by_partition.setdefault(partition, []).append(record)
    return [await profile_events_topic.send(key=b"pack", value=value, partition=partition)
            for partition, values in by_partition.items()
            for value in profile_pack.pack(values, max_events=settings.profiles_pack_events)]


async def forward_event(obs: Observation, partition: int) -> Awaitable[Any]:
    """Send a clickstream observation to the identity stage; return the broker's acknowledgement to await."""
    anon = activity_batch.anonymous_hash(obs)
    doc = {"obs": observation_to_dict(obs), "anon": anon, "partition": partition}
    delivery = await identity_input_topic.send(key=(anon or "").encode(), value=orjson.dumps(doc), force=True)
    IDENTITY_FORWARDED.labels(CLICKSTREAM).inc()
    return delivery


async def send_dead_letter(
    record: EventT, rejection: Rejection, index: int | None = None, raw: bytes | None = None
) -> Awaitable[Any]:
    """Send the dead letter of a refused input record (or of event ``index`` of a batch record, whose
    bytes are ``raw``); returns the broker's acknowledgement to await.

    Shared by every agent that refuses input (ingest here, identity for its internal input).
    A clickstream dead letter holds the activity table's watermark until it is acknowledged.
    """
    message = record.message
    letter = dead_letter(
        record.value if raw is None else raw,
        rejection,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        timestamp_ms=int(message.timestamp * 1000),
        now=time.time(),
        index=index,
    )
    delivery = await dead_letters_topic.send(
        key=letter["dead_letter_id"].encode(), value=orjson.dumps(letter), force=True
    )
    if message.topic == CLICKSTREAM:
        activity_table.hold_watermark_for(delivery)
    DEAD_LETTERS.labels(message.topic, rejection.code).inc()
    return delivery
