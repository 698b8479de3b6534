"""Stage 3, profiles: sessions and the unified profile of each profile_id.

<app_id>-profile-events (keyed by profile_id, from ingest) ──► profiles table ──► Redis persona:profile:<id>
                                                         ├──► session-summaries (closed sessions)
                                                         ├──► segment-changes (rule segments entered/exited)
                                                         └──► <app_id>-cluster-input (feature vector per closed session)
tick records (sent by a timer into each owned partition)  ──► close idle sessions, fire timed segment rules

Ticks travel through the same partition as the events, so closing sessions happens in
stream order, inside the stream (where table writes reach the right changelog partition).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from faust.types import StreamT

from app.faust_app import (
    cluster_input_topic,
    faust_app,
    profile_events_topic,
    segment_changes_topic,
    session_summaries_topic,
    settings,
)
from app.lifecycle import redis_sink
from app.metrics import SEGMENT_CHANGES, SESSIONS_CLOSED, STAGE_SECONDS
from app.validation import Event
from tables import cluster_stage, profile_stage, serving, sessions
from tables.definitions import profiles_table
from tables.quality import QualityMonitor

TICK_SECONDS = 5.0
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
        envelope = orjson.loads(record.value)
        if "tick" in envelope:
            await on_tick(message.partition, float(envelope["tick"]))
        else:
            await apply_event(envelope, message.topic, message.partition, message.offset)
        await profiles_table.applied(message.partition, message.offset)
        STAGE_SECONDS.labels("profiles").observe(time.perf_counter() - started)


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
    await emit(profile_id, outputs, value)
    track(partition, profile_id, value)
    for redis_key, fields in serving.profile_entries(profile_id, value, event.ts):
        redis_sink.put(redis_key, fields)


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
        if value is None:
            waiting[partition].discard(profile_id)
            continue
        value, outputs = profile_stage.tick(value, now, profile_id)
        if outputs.closed_sessions or outputs.segment_changes:
            profiles_table[profile_id] = value
            await emit(profile_id, outputs, value)
            for redis_key, fields in serving.profile_entries(profile_id, value, now):
                redis_sink.put(redis_key, fields)
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
        delivery = await segment_changes_topic.send(key=key, value=orjson.dumps(change))
        profiles_table.hold_watermark_for(delivery)
        SEGMENT_CHANGES.labels(change["segment_kind"], change["change"]).inc()
        redis_sink.set_member(*serving.membership_update(change))


@faust_app.timer(TICK_SECONDS)
async def send_ticks() -> None:
    """Put a tick into every profile-events partition this worker owns."""
    owned = [tp.partition for tp in faust_app.consumer.assignment() if tp.topic == settings.profile_events_topic]
    for partition in owned:
        await profile_events_topic.send(key=b"tick", value=orjson.dumps({"tick": time.time()}), partition=partition)
