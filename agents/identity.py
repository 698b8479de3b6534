"""Stage 2, identity: one ordered stream of identity observations, one owner of all identity state.

<app_id>-identity-input (1 partition) ──► resolver ──► identity table (1 partition)
   (observations from ingest; operator split commands from ``persona identity split``)
        ├──► identity-changes (merged / possible_match / refused), keyed by profile_id
        ├──► <app_id>-identity-aliases (anonymous_id hash → profile_id, to the clickstream partition)
        └──► Redis persona:profile:<profile_id>:identity
<app_id>-identity-aliases ──► alias table (co-partitioned with clickstream) ──► Redis persona:identity:<hash>

Exactness: the resolver writes into a staged view of the identity table; the record's
outputs are sent and acknowledged first, then the staged state is written, then the
table's watermark (= last applied identity-input offset). A replayed offset at or below
the watermark is skipped; a record whose state was lost is resolved again and emits the
same outputs (stable change ids).
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import orjson
from faust.types import StreamT

from app.faust_app import (
    faust_app,
    identity_aliases_topic,
    identity_input_topic,
    output_topics,
    resolver,
    settings,
)
from app.lifecycle import redis_sink
from app.metrics import DUPLICATES, IDENTITY_ALIASES, IDENTITY_CHANGES, STAGE_SECONDS
from tables.definitions import alias_table, identity_table
from tables.exact import watermark_key
from tables.identity import Resolution
from tables.identity.stream import (
    PREFIXES,
    StagedStore,
    alias_updates,
    identity_state,
    note_anonymous_id,
    observation_from_dict,
    profile_summary,
)
from tables.store import KeyValueStore

INPUT = settings.identity_input_topic
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
        doc = orjson.loads(record.value)
        staged = StagedStore(cast(KeyValueStore, identity_table))
        state = identity_state(staged)
        if doc.get("command") == "split":  # operator split (persona identity split)
            edges = [(a, b) for a, b in doc["edges"]]
            resolution = Resolution(
                doc["profile_id"], resolver.withdraw_evidence(state, doc["profile_id"], edges, doc["at"])
            )
            touched = sorted({p for c in resolution.changes for p in [c["profile_id"], *c.get("new_profile_ids", ())]})
        else:
            if doc.get("anon"):
                note_anonymous_id(staged, doc["anon"], int(doc["partition"]))
            resolution = resolver.resolve(state, observation_from_dict(doc["obs"]))
            touched = [resolution.profile_id] if resolution.profile_id else []
        aliases = alias_updates(staged, touched)
        deliveries = [
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
                summary = profile_summary(profile)
                fields = {k: orjson.dumps(v).decode() for k, v in summary.items()}
                redis_sink.put(f"persona:profile:{pid}:identity", fields)
                # The lookup index: every identifier hash of the profile -> the profile.
                for identifier_hash in profile["identifiers"]:
                    redis_sink.put(f"persona:identity:{identifier_hash}", {"profile_id": pid})
        for absorbed in resolution.absorbed:
            redis_sink.put(f"persona:profile:{absorbed}:identity", {"merged_into": resolution.profile_id or ""})
        STAGE_SECONDS.labels("identity").observe(time.perf_counter() - started)


@faust_app.agent(identity_aliases_topic, name="identity-aliases")
async def identity_aliases(stream: StreamT) -> None:
    async for record in stream.events():
        message = record.message
        anon = record.key.decode() if isinstance(record.key, bytes) else str(record.key)
        current = alias_table.get(anon)
        if current is not None and message.offset <= current["offset"]:
            DUPLICATES.labels(message.topic, "offset").inc()
        else:
            pid = orjson.loads(record.value)["profile_id"]
            alias_table[anon] = {"profile_id": pid, "offset": message.offset}
            redis_sink.put(f"persona:identity:{anon}", {"profile_id": pid})
        await alias_table.applied(message.partition, message.offset)
