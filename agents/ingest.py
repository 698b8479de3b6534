"""Stage 1, ingest: validate every input record, dead-letter the bad ones, apply the good ones.

clickstream ──► validate ──► activity table (per anonymous id) ──► Redis
                   └──────► dead-letters (original bytes + reason)
crm-profiles ──► validate ──► (identity stage) / dead-letters
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from faust.types import EventT, StreamT

from app.deadletters import dead_letter
from app.faust_app import (
    clickstream_topic,
    crm_profiles_topic,
    dead_letters_topic,
    faust_app,
    hasher,
    settings,
    validator,
)
from app.lifecycle import redis_sink
from app.metrics import DEAD_LETTERS, DUPLICATES, EVENT_LAG_SECONDS, EVENTS_PROCESSED, STAGE_SECONDS
from app.validation import Rejection
from tables import activity
from tables.definitions import activity_table

CLICKSTREAM = settings.topics.clickstream
CRM = settings.topics.crm_profiles


@faust_app.agent(clickstream_topic, name="ingest-clickstream")
async def ingest_clickstream(stream: StreamT) -> None:
    async for record in stream.events():
        started = time.perf_counter()
        message = record.message
        result = validator.clickstream(record.value, now=time.time())
        if isinstance(result, Rejection):
            await send_dead_letter(record, result)
        else:
            key = hasher("anonymous_id", result.anonymous_id)
            state, outcome = activity.apply(
                activity_table.get(key),
                result.type,
                result.event_id,
                result.ts,
                message.offset,
                settings.dedup_window,
            )
            if outcome == "replayed":
                DUPLICATES.labels(CLICKSTREAM, "offset").inc()
            else:
                activity_table[key] = state
                if outcome == "applied":
                    EVENTS_PROCESSED.labels(CLICKSTREAM, result.type).inc()
                    redis_sink.put(f"persona:activity:{key}", redis_fields(activity.summary(state)))
                else:
                    DUPLICATES.labels(CLICKSTREAM, "event_id").inc()
        await activity_table.applied(message.partition, message.offset)
        STAGE_SECONDS.labels("ingest").observe(time.perf_counter() - started)
        EVENT_LAG_SECONDS.labels(CLICKSTREAM).observe(max(0.0, time.time() - message.timestamp))


@faust_app.agent(crm_profiles_topic, name="ingest-crm")
async def ingest_crm(stream: StreamT) -> None:
    async for record in stream.events():
        result = validator.crm_record(record.value)
        if isinstance(result, Rejection):
            await send_dead_letter(record, result)
        else:
            EVENTS_PROCESSED.labels(CRM, "crm_record").inc()


async def send_dead_letter(record: EventT, rejection: Rejection) -> None:
    message = record.message
    letter = dead_letter(
        record.value,
        rejection,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        timestamp_ms=int(message.timestamp * 1000),
        now=time.time(),
    )
    delivery = await dead_letters_topic.send(key=letter["dead_letter_id"].encode(), value=orjson.dumps(letter))
    if message.topic == CLICKSTREAM:
        activity_table.hold_watermark_for(delivery)
    DEAD_LETTERS.labels(message.topic, rejection.code).inc()


def redis_fields(summary: dict[str, Any]) -> dict[str, str | int | float]:
    """Flatten a summary into Redis hash fields: scalars as they are, the rest as JSON."""
    return {
        name: value if isinstance(value, int | float | str) else orjson.dumps(value).decode()
        for name, value in summary.items()
        if value is not None
    }
