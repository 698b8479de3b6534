"""Stage 3, profiles: sessions and the unified profile of each profile_id.

<app_id>-profile-events (keyed by profile_id, from ingest) ──► profiles table ──► Redis persona:profile:<id>
                                                         └──► session-summaries (closed sessions)
tick records (sent by a timer into each owned partition)  ──► close the sessions of idle profiles

Ticks travel through the same partition as the events, so closing sessions happens in
stream order, inside the stream (where table writes reach the right changelog partition).
"""

from __future__ import annotations

import time

import orjson
from faust.types import StreamT

from app.faust_app import faust_app, profile_events_topic, session_summaries_topic, settings
from app.lifecycle import redis_sink
from app.metrics import SESSIONS_CLOSED, STAGE_SECONDS
from app.redis_sink import flatten
from app.validation import Event
from tables import profile_stage, sessions
from tables.definitions import profiles_table
from tables.quality import QualityMonitor

TICK_SECONDS = 5.0
clock = profile_stage.StreamClock()
monitor = QualityMonitor()
# partition -> profile ids with open sessions; rebuilt from the table after a restart.
open_sessions: dict[int, set[str]] = {}


@faust_app.agent(profile_events_topic, name="profiles")
async def update_profiles(stream: StreamT) -> None:
    async for record in stream.events():
        started = time.perf_counter()
        message = record.message
        envelope = orjson.loads(record.value)
        if "tick" in envelope:
            await close_idle_sessions(message.partition, float(envelope["tick"]))
        else:
            await apply_event(envelope, message.partition, message.offset)
        await profiles_table.applied(message.partition, message.offset)
        STAGE_SECONDS.labels("profiles").observe(time.perf_counter() - started)


async def apply_event(envelope: dict[str, object], partition: int, offset: int) -> None:
    doc = envelope["event"]
    assert isinstance(doc, dict)
    profile_id = str(envelope["profile_id"])
    event = Event(doc, doc["type"], doc["event_id"], doc["anonymous_id"], float(str(envelope["ts"])))
    clock.observe(partition, event.ts, time.time())
    value, closed = profile_stage.apply_event(profiles_table.get(profile_id), event, offset, partition, monitor=monitor)
    profiles_table[profile_id] = value
    await emit_sessions(profile_id, closed)
    track_open(partition, profile_id, value)
    redis_sink.put(f"persona:profile:{profile_id}", flatten(profile_stage.serving(value, event.ts)))


async def close_idle_sessions(partition: int, wall: float) -> None:
    now = clock.now(partition, wall)
    if now is None:
        return
    if partition not in open_sessions:
        open_sessions[partition] = {
            str(pid)
            for pid, value in profiles_table.items()
            if isinstance(value, dict)
            and value.get("partition") == partition
            and profile_stage.has_open_sessions(value)
        }
    for profile_id in list(open_sessions[partition]):
        value = profiles_table.get(profile_id)
        if value is None:
            open_sessions[partition].discard(profile_id)
            continue
        value, closed = profile_stage.tick(value, now)
        if closed:
            profiles_table[profile_id] = value
            await emit_sessions(profile_id, closed)
            redis_sink.put(f"persona:profile:{profile_id}", flatten(profile_stage.serving(value, now)))
        track_open(partition, profile_id, value)


def track_open(partition: int, profile_id: str, value: dict[str, object]) -> None:
    members = open_sessions.setdefault(partition, set())
    if profile_stage.has_open_sessions(value):
        members.add(profile_id)
    else:
        members.discard(profile_id)


async def emit_sessions(profile_id: str, closed: list[sessions.Session]) -> None:
    for session in closed:
        delivery = await session_summaries_topic.send(
            key=profile_id.encode(), value=orjson.dumps(sessions.summary(session, profile_id))
        )
        profiles_table.hold_watermark_for(delivery)
        SESSIONS_CLOSED.labels(session.get("close_reason", "inactivity")).inc()


@faust_app.timer(TICK_SECONDS)
async def send_ticks() -> None:
    """Put a tick into every profile-events partition this worker owns."""
    owned = [tp.partition for tp in faust_app.consumer.assignment() if tp.topic == settings.profile_events_topic]
    for partition in owned:
        await profile_events_topic.send(key=b"tick", value=orjson.dumps({"tick": time.time()}), partition=partition)
