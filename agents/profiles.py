"""Stage 3, profiles: sessions and the unified profile of each profile_id.

<app_id>-profile-events (keyed by profile_id, from ingest) ──► profiles table ──► Redis persona:profile:<id>
                                                         ├──► session-summaries (closed sessions)
                                                         ├──► segment-changes (rule segments entered/exited)
                                                         └──► <app_id>-cluster-input (feature vector per closed session)
tick records (sent by a timer into each owned partition)  ──► close idle sessions, fire timed segment rules
identity-changes ──► profiles-identity ──► merge_out / split records (keyed by the profile that must act)
merge_out at B ──► merge_in at A (B's state) ──► B becomes a tombstone {"merged_into": A}
identity stage (CRM records) ──► traits records (age band, city, state, country)

Ticks travel through the same partition as the events, so closing sessions happens in
stream order, inside the stream (where table writes reach the right changelog partition).
Merges travel the same way: the partition that owns a state is the only one that reads or
writes it (tables/profile_identity.py has the record kinds and their exactness).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from faust.types import StreamT

from agents.ingest import send_dead_letter
from app.faust_app import (
    cluster_input_topic,
    faust_app,
    output_topics,
    profile_events_topic,
    segment_changes_topic,
    session_summaries_topic,
    settings,
)
from app.lifecycle import redis_sink
from app.metrics import (
    DUPLICATES,
    PROFILE_REDIRECTS,
    SEGMENT_CHANGES,
    SESSION_LATE_EVENTS,
    SESSIONS_CLOSED,
    STAGE_SECONDS,
)
from app.validation import Event, Rejection
from tables import cluster_stage, profile_identity, profile_stage, serving, sessions
from tables.definitions import profiles_table
from tables.quality import QualityMonitor

TICK_SECONDS = 5.0
identity_changes_topic = output_topics[settings.topics.identity_changes]
clock = profile_stage.StreamClock()
monitor = QualityMonitor()
# partition -> profile ids a tick may concern (open sessions or a segment evaluation due);
# rebuilt from the table after a restart.
waiting: dict[int, set[str]] = {}


@faust_app.agent(profile_events_topic, name="profiles")
async def update_profiles(stream: StreamT) -> None:
    async for record in stream.events():
        started = time.perf_counter()
        message = record.message
        try:
            envelope = orjson.loads(record.value)
            if "tick" in envelope:
                await on_tick(message.partition, float(envelope["tick"]))
            else:
                await apply_record(envelope, message.topic, message.partition, message.offset)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Only this application writes the topic, so this is a bug or a foreign producer:
            # keep the record for inspection and go on with the partition.
            rejection = Rejection("schema_violation", f"not a valid profile-events record: {exc!r}")
            profiles_table.hold_watermark_for(await send_dead_letter(record, rejection))
        await profiles_table.applied(message.partition, message.offset)
        STAGE_SECONDS.labels("profiles").observe(time.perf_counter() - started)


async def apply_record(envelope: dict[str, Any], topic: str, partition: int, offset: int) -> None:
    """One record for one profile: an event, a merge or split step, CRM traits."""
    profile_id = str(envelope["profile_id"])
    value = profiles_table.get(profile_id)
    if "merge_out" in envelope:
        await merge_out(profile_id, value, envelope["merge_out"], partition, offset)
    elif "revive" in envelope:
        revived = profile_identity.revive(value, envelope["revive"], offset, partition)
        if revived is not None:
            profiles_table[profile_id] = revived
            serve(profile_id, revived, stream_now(partition, None))
    elif profile_identity.is_tombstone(value):
        await redirect(profile_id, value, envelope, topic, offset)
    elif "merge_in" in envelope:
        await merge_in(profile_id, value, envelope["merge_in"], topic, partition, offset)
    elif "split" in envelope:
        await split(profile_id, value, envelope["split"], partition)
    elif "traits" in envelope:
        value = profile_identity.traits(value, envelope["traits"], float(envelope["ts"]), partition)
        profiles_table[profile_id] = value
        serve(profile_id, value, stream_now(partition, value))
    else:
        await apply_event(envelope, topic, partition, offset)


async def merge_out(profile_id: str, value: Any, payload: dict[str, Any], partition: int, offset: int) -> None:
    tombstone, handover = profile_identity.merge_out(value, payload, profile_id, offset, partition)
    if handover is not None:
        # Acknowledged before the tombstone is written: a crash in between replays this
        # record, which sends the same merge_in again (a no-op at the survivor).
        await send_profile_record(handover)
    if tombstone != value:
        profiles_table[profile_id] = tombstone
        track(partition, profile_id, tombstone)
        serve(profile_id, tombstone, 0.0)


async def redirect(profile_id: str, tombstone: Any, envelope: dict[str, Any], topic: str, offset: int) -> None:
    """A record for an absorbed profile goes on to its survivor (events ingest stamped before the
    alias update reached it, merge_in of a chain)."""
    moved = profile_identity.redirect(tombstone, envelope, offset)
    if moved is None:
        DUPLICATES.labels(topic, "offset").inc()
        return
    tombstone, forward = moved
    await send_profile_record(forward)
    PROFILE_REDIRECTS.labels(profile_identity.merge_cause(tombstone)).inc()
    profiles_table[profile_id] = tombstone


async def merge_in(
    profile_id: str, value: Any, payload: dict[str, Any], topic: str, partition: int, offset: int
) -> None:
    now = stream_now(partition, payload.get("state") or value)
    value, outputs, outcome = profile_identity.merge_in(value, payload, offset, partition, profile_id, now)
    if outcome != "merged":
        DUPLICATES.labels(topic, "offset" if outcome == "replayed" else "change_id").inc()
        return
    profiles_table[profile_id] = value
    await emit(profile_id, outputs, value)
    if not payload.get("split"):
        # The one clusters stage moves the absorbed profile's cluster membership (idempotent there).
        record = cluster_stage.merge_record(str(payload["from"]), profile_id, str(payload["change_id"]), now)
        delivery = await cluster_input_topic.send(key=str(payload["from"]).encode(), value=orjson.dumps(record))
        profiles_table.hold_watermark_for(delivery)
    track(partition, profile_id, value)
    serve(profile_id, value, now)


async def split(profile_id: str, value: Any, payload: dict[str, Any], partition: int) -> None:
    now = stream_now(partition, value)
    kept, sends, outputs = profile_identity.split(value, payload, profile_id, now)
    if kept is None or kept is value:
        return
    for envelope in sends:
        await send_profile_record(envelope)
    profiles_table[profile_id] = kept
    await emit(profile_id, outputs, kept)
    track(partition, profile_id, kept)
    serve(profile_id, kept, now)


def stream_now(partition: int, value: Any) -> float:
    """The partition's stream time; before any event was seen here, the profile's last event time."""
    now = clock.now(partition, time.time())
    if now is not None:
        return now
    last = (value or {}).get("profile", {}).get("last_seen") if isinstance(value, dict) else None
    return float(last) if isinstance(last, int | float) else time.time()


def serve(profile_id: str, value: Any, now: float) -> None:
    for redis_key, fields in serving.profile_entries(profile_id, value, now):
        redis_sink.put(redis_key, fields)


async def send_profile_record(envelope: dict[str, Any]) -> None:
    """Send a record to the profile's partition of profile-events and wait for the broker's ack."""
    delivery = await profile_events_topic.send(
        key=str(envelope["profile_id"]).encode(), value=orjson.dumps(envelope), force=True
    )
    await delivery


async def apply_event(envelope: dict[str, Any], topic: str, partition: int, offset: int) -> None:
    doc = envelope["event"]
    profile_id = str(envelope["profile_id"])
    event = Event(doc, doc["type"], doc["event_id"], doc["anonymous_id"], float(envelope["ts"]))
    clock.observe(partition, event.ts, time.time())
    value, outputs = profile_stage.apply_event(
        profiles_table.get(profile_id), event, offset, partition, profile_id,
        monitor=monitor, basis=f"{topic}:{partition}:{offset}",
    )
    profiles_table[profile_id] = value
    if outputs.late_events:
        SESSION_LATE_EVENTS.labels("redirected" if "redirected_from" in envelope else "direct").inc()
    await emit(profile_id, outputs, value)
    track(partition, profile_id, value)
    serve(profile_id, value, event.ts)


async def on_tick(partition: int, wall: float) -> None:
    now = clock.now(partition, wall)
    if now is None:
        return
    if partition not in waiting:
        waiting[partition] = {
            str(pid) for pid, value in profiles_table.items() if needs_ticks(value, partition)
        }
    for profile_id in list(waiting[partition]):
        value = profiles_table.get(profile_id)
        if value is None or profile_identity.is_tombstone(value):
            waiting[partition].discard(profile_id)
            continue
        value, outputs = profile_stage.tick(value, now, profile_id)
        if outputs.closed_sessions or outputs.segment_changes:
            profiles_table[profile_id] = value
            await emit(profile_id, outputs, value)
            serve(profile_id, value, now)
        track(partition, profile_id, value)


def needs_ticks(value: Any, partition: int) -> bool:
    return (
        isinstance(value, dict)
        and value.get("partition") == partition
        and (profile_stage.has_open_sessions(value) or profile_stage.next_evaluation_at(value) is not None)
    )


def track(partition: int, profile_id: str, value: dict[str, Any]) -> None:
    members = waiting.setdefault(partition, set())
    if needs_ticks(value, partition):
        members.add(profile_id)
    else:
        members.discard(profile_id)


async def emit(profile_id: str, outputs: profile_stage.Outputs, value: dict[str, Any]) -> None:
    key = profile_id.encode()
    for session in outputs.closed_sessions:
        summary = sessions.summary(session, profile_id)
        delivery = await session_summaries_topic.send(key=key, value=orjson.dumps(summary))
        profiles_table.hold_watermark_for(delivery)
        SESSIONS_CLOSED.labels(session.get("close_reason", "inactivity")).inc()
    if outputs.closed_sessions:  # the cluster model learns a profile once per closed session
        vector = cluster_stage.cluster_input(profile_id, value, outputs.closed_sessions[-1]["id"])
        profiles_table.hold_watermark_for(await cluster_input_topic.send(key=key, value=orjson.dumps(vector)))
    for change in outputs.segment_changes:
        # Keyed by the profile the change is about: a merge also emits the absorbed one's exits.
        delivery = await segment_changes_topic.send(key=str(change["profile_id"]).encode(), value=orjson.dumps(change))
        profiles_table.hold_watermark_for(delivery)
        SEGMENT_CHANGES.labels(change["segment_kind"], change["change"]).inc()
        redis_sink.set_member(*serving.membership_update(change))


@faust_app.timer(TICK_SECONDS)
async def send_ticks() -> None:
    """Put a tick into every profile-events partition this worker owns."""
    owned = [tp.partition for tp in faust_app.consumer.assignment() if tp.topic == settings.profile_events_topic]
    for partition in owned:
        await profile_events_topic.send(key=b"tick", value=orjson.dumps({"tick": time.time()}), partition=partition)


@faust_app.agent(identity_changes_topic, name="profiles-identity")
async def follow_identity_changes(stream: StreamT) -> None:
    """Turn each merge or split into records for the partitions that own the profiles concerned.

    Stateless: a replayed change sends the same records again, and every step downstream
    is idempotent by the change id (tables/profile_identity.py).
    """
    async for record in stream.events():
        try:
            change = orjson.loads(record.value)
            sends = profile_identity.control_records(change)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            await send_dead_letter(record, Rejection("schema_violation", f"not a valid identity change: {exc!r}"))
            continue
        for _, envelope in sends:
            await send_profile_record(envelope)
