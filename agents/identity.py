"""Stage 2, identity: one ordered stream of identity observations, one owner of all identity state.

<app_id>-identity-input (1 partition) ──► resolver ──► identity table (1 partition)
   (observations from ingest; operator split commands from ``persona identity split``)
        ├──► identity-changes (merged / possible_match / refused), keyed by profile_id
        ├──► <app_id>-identity-aliases (anonymous_id hash → profile_id, to the clickstream partition)
        ├──► <app_id>-profile-events: a CRM record's trait bands, keyed by the profile it resolved to
        └──► Redis persona:profile:<profile_id>:identity
<app_id>-identity-aliases ──► alias table (co-partitioned with clickstream) ──► Redis persona:identity:<hash>
                           └──► <app_id>-profile-events: on an anonymous id's first alias, the merge_out of
                                its provisional profile into the real one (after the alias is visible to ingest)

Exactness: the resolver writes into a staged view of the identity table; the record's
outputs are sent and acknowledged first, then the staged state is written, then the
table's watermark (= last applied identity-input offset). A replayed offset at or below
the watermark is skipped; a record whose state was lost is resolved again and emits the
same outputs (stable change ids).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import orjson
from faust.types import StreamT

from agents.ingest import send_dead_letter
from app.faust_app import (
    faust_app,
    identity_aliases_topic,
    identity_input_topic,
    output_topics,
    profile_events_topic,
    resolver,
    settings,
)
from app.lifecycle import redis_sink
from app.metrics import DUPLICATES, IDENTITY_ALIASES, IDENTITY_CHANGES, STAGE_SECONDS
from app.validation import Rejection
from tables import profile_identity, serving
from tables.definitions import alias_table, identity_table
from tables.exact import watermark_key
from tables.identity.stream import (
    PREFIXES,
    ObservationInput,
    StagedStore,
    alias_updates,
    apply_identity_input,
    parse_identity_input,
)
from tables.store import KeyValueStore

INPUT = settings.identity_input_topic
logger = logging.getLogger(__name__)
changes_topic = output_topics[settings.topics.identity_changes]


@faust_app.agent(identity_input_topic, name="identity")
async def identity(stream: StreamT) -> None:
    async for record in stream.events():
        started = time.perf_counter()
        message = record.message
        applied = identity_table.data.get(watermark_key(message.partition))
        if applied is not None and message.offset <= applied:
            DUPLICATES.labels(INPUT, "offset").inc()
            continue
        staged = StagedStore(cast(KeyValueStore, identity_table))
        parsed = parse_identity_input(record.value)
        try:
            if not isinstance(parsed, Rejection):
                resolution, touched = apply_identity_input(resolver, staged, parsed)
        except Exception as exc:
            # A poison record must not stop the one identity partition (every later record waits
            # behind it). Nothing was written: the resolver only touched the staged view, dropped here.
            logger.exception("identity input %s:%s refused by the resolver", message.partition, message.offset)
            parsed = Rejection("invalid_identity_input", f"the resolver could not apply it: {exc!r}"[:500])
        if isinstance(parsed, Rejection):
            # The watermark passes the bad record only once its dead letter is acknowledged.
            await (await send_dead_letter(record, parsed))
            await identity_table.applied(message.partition, message.offset)
            continue
        aliases = alias_updates(staged, touched)
        deliveries = []
        if isinstance(parsed, ObservationInput) and parsed.traits and resolution.profile_id:
            # A CRM record's trait bands (no clear PII: banded at ingest) for the profile it resolved to.
            traits = {"profile_id": resolution.profile_id, "traits": parsed.traits, "ts": parsed.ts}
            deliveries.append(await profile_events_topic.send(
                key=resolution.profile_id.encode(), value=orjson.dumps(traits), force=True
            ))
        deliveries += [
            await changes_topic.send(key=change["profile_id"].encode(), value=orjson.dumps(change), force=True)
            for change in resolution.changes
        ]
        deliveries += [
            await identity_aliases_topic.send(
                key=anon.encode(), value=orjson.dumps({"profile_id": pid}), partition=partition, force=True
            )
            for anon, pid, partition in aliases
        ]
        await asyncio.gather(*deliveries)
        staged.commit()
        await identity_table.applied(message.partition, message.offset)
        for change in resolution.changes:
            IDENTITY_CHANGES.labels(change["change"]).inc()
        IDENTITY_ALIASES.inc(len(aliases))
        for pid in touched:
            profile = identity_table.get(PREFIXES["profiles"] + pid)
            if profile:
                # The identity summary and the lookup index: every identifier hash -> the profile.
                for redis_key, fields in serving.profile_identity_entries(profile):
                    redis_sink.put(redis_key, fields)
        for absorbed in resolution.absorbed:
            for redis_key, fields in serving.merged_entries(absorbed, resolution.profile_id):
                redis_sink.put(redis_key, fields)
        STAGE_SECONDS.labels("identity").observe(time.perf_counter() - started)


@faust_app.agent(identity_aliases_topic, name="identity-aliases")
async def identity_aliases(stream: StreamT) -> None:
    async for record in stream.events():
        message = record.message
        anon = record.key.decode() if isinstance(record.key, bytes) else str(record.key)
        pid = str(orjson.loads(record.value)["profile_id"])
        entry, handover = profile_identity.follow_alias(alias_table.get(anon), anon, pid, message.offset)
        if entry is None:
            DUPLICATES.labels(message.topic, "offset").inc()
        else:
            # Visible to ingest from here on: later events of this anonymous id are stamped with pid.
            alias_table[anon] = entry
            if handover is not None:
                key, envelope = handover
                await (await profile_events_topic.send(key=key.encode(), value=orjson.dumps(envelope), force=True))
                alias_table[anon] = entry = {k: v for k, v in entry.items() if k != "handover"}
            for redis_key, fields in serving.alias_entries(anon, entry):
                redis_sink.put(redis_key, fields)
        await alias_table.applied(message.partition, message.offset)
