"""``persona rebuild-redis``: restore every serving key in Redis from the tables' changelogs.

Redis is a cache; the changelog topics are the truth. The command reads each table's
changelog (``<app_id>-<table>-changelog``) from the beginning to its end (the end offsets
at start, then on until a poll finds nothing more), with a plain consumer without a group,
so it disturbs no worker; it keeps the last value per
key (a tombstone deletes it; exact-recovery watermark keys are skipped), turns every
value into its serving keys with :mod:`app.serving.keys` (the same functions the agents
use) and writes them in pipelined batches with the configured TTL. The serving keys of
deleted entries are deleted from Redis, unless a live entry writes them again (the
``merged_into`` marker of an absorbed profile comes from its profiles-table tombstone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Collection, Iterator
from typing import Any

import click
import orjson

from app.errors import PersonaError, StackError
from app.runtime.settings import Settings
from app.serving.keys import TABLES

#: A changelog is read to its end once a poll of this long returns nothing past the end offsets.
IDLE_MS = 1000


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


def last_values(records: Iterator[tuple[bytes | None, bytes | None]]) -> dict[str, Any]:
    """The table a changelog implies: last value per key, tombstones deleting, watermarks and
    tick-index keys (tables/due_index.py) skipped.

    >>> recs = [(b'"a"', b'{"n": 1}'), (b'"a"', b'{"n": 2}'), (b'"b"', b'1'), (b'"b"', None),
    ...         (b'"__watermark__/0"', b'7'), (b'"__due__/0/0000000003100.000/a"', b'3100.0')]
    >>> last_values(iter(recs))
    {'a': {'n': 2}}
    """
    table: dict[str, Any] = {}
    for key, raw_value in state_records(records):
        if raw_value is None:
            table.pop(key, None)
        else:
            table[key] = orjson.loads(raw_value)
    return table


def deleted_keys(records: Iterator[tuple[bytes | None, bytes | None]]) -> set[str]:
    """The keys a changelog deleted: their last record is a tombstone (erased or removed state).

    >>> sorted(deleted_keys(iter([(b'"a"', b'1'), (b'"a"', None), (b'"b"', None), (b'"b"', b'2'),
    ...                           (b'"__due__/0/0000000003100.000/c"', None)])))
    ['a']
    """
    gone: set[str] = set()
    for key, raw_value in state_records(records):
        if raw_value is None:
            gone.add(key)
        else:
            gone.discard(key)
    return gone


def state_records(records: Iterator[tuple[bytes | None, bytes | None]]) -> Iterator[tuple[str, bytes | None]]:
    """The changelog records of state keys, key decoded: no watermarks, no tick-index keys."""
    from tables.due_index import is_index_key
    from tables.watermark import is_watermark_key

    for raw_key, raw_value in records:
        if raw_key is None:
            continue
        key = orjson.loads(raw_key)
        if not (is_watermark_key(key) or is_index_key(key)):
            yield str(key), raw_value


def stale_keys(deleted: dict[str, set[str]], written: Collection[str]) -> list[str]:
    """Redis keys of deleted table entries that no live entry writes again: delete them.

    An absorbed profile's identity entry is deleted by the identity table, but its
    profiles tombstone writes a ``merged_into`` marker at the same key, which wins.

    >>> stale_keys({"profiles": {"p-1"}, "identity": {"p/p-2"}}, written={"persona:profile:p-2:identity"})
    ['persona:profile:p-1']
    """
    from app.serving import keys as serving

    return sorted(
        {k for table, keys in deleted.items() for key in keys for k in serving.gone_entries(table, key)} - set(written)
    )


def serving_keys(tables: dict[str, dict[str, Any]], now: float) -> dict[str, dict[str, str | int | float]]:
    """Every serving key the tables imply (identity summaries and lookups, activity, profiles, clusters)."""
    from app.serving import keys as serving

    out: dict[str, dict[str, str | int | float]] = {}
    aliases = tables.get("identity_alias", {})
    for table in TABLES:
        for key, value in tables.get(table, {}).items():
            out.update(serving.table_entries(table, key, value, now, aliases))
    return out


def segment_sets(tables: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """Every segment set (``persona:segment:<id>``) the tables imply: rule and cluster memberships.

    >>> tables = {"profiles": {"p-1": {"segments": {"members": {"segments": {
    ...     "vip": {"kind": "rule", "since": 1.0, "reason": {}}}}}}},
    ...           "clusters": {"p-1": {"members": {"segments": {"cluster-0": {"kind": "cluster", "since": 1.0}}}}}}
    >>> segment_sets(tables)
    {'persona:segment:vip': {'p-1'}, 'persona:segment:cluster-0': {'p-1'}}
    """
    from app.serving import keys as serving

    out: dict[str, set[str]] = {}
    for table in ("profiles", "clusters"):
        for pid, value in tables.get(table, {}).items():
            for key in serving.segment_memberships(table, pid, value):
                out.setdefault(key, set()).add(pid)
    return out


async def topic_partitions(consumer: Any, topic: str) -> list[Any]:
    """The ``TopicPartition`` s of ``topic`` as the broker reports them now; ``[]`` if it does not exist.

    Asks the broker: an unsubscribed consumer's own metadata names no topic on Apache Kafka (its
    first metadata request asks for none; Tansu answers it with every topic), and
    ``consumer.topics()`` answers names only.
    """
    from aiokafka import TopicPartition

    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]


async def read_changelog(settings: Settings, topic: str, timeout: float) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic`` up to its end offsets at start (empty if the topic does not exist)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaConnectionError, KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_list,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10000,
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        raise StackError(f"cannot reach Kafka at {settings.bootstrap_list}: {exc}") from exc
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        # Read to the end offsets, then on until a poll of IDLE_MS finds nothing: the embedded
        # broker (Tansu) answers "latest" with the base offset of the last batch + 1, short of
        # the real end when that batch holds several records. Records newer than the start
        # are newer table values, so reading them is harmless.
        while True:
            behind = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            batch = await consumer.getmany(*tps, timeout_ms=500 if behind else IDLE_MS)
            for messages in batch.values():
                out.extend((m.key, m.value) for m in messages)
            if not behind and not batch:
                return out
            if time.monotonic() > deadline:
                raise StackError(f"reading {topic} did not reach its end within {timeout:.0f} s")
    except KafkaError as exc:
        raise StackError(f"reading {topic} from Kafka at {settings.bootstrap_list} failed: {exc}") from exc
    finally:
        await consumer.stop()


async def rebuild(settings: Settings, batch_size: int, timeout: float) -> tuple[Counter[str], dict[str, int]]:
    """Rebuild Redis; return the keys written per family and the records read per changelog."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from app.runtime.redis_sink import write_hashes
    from app.serving import keys as serving

    client = aioredis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise StackError(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc
        tables: dict[str, dict[str, Any]] = {}
        deleted: dict[str, set[str]] = {}
        read: dict[str, int] = {}
        for table in TABLES:
            topic = changelog_topic(settings, table)
            records = await read_changelog(settings, topic, timeout)
            read[topic] = len(records)
            tables[table] = last_values(iter(records))
            deleted[table] = deleted_keys(iter(records))
        keys = serving_keys(tables, time.time())
        sets = segment_sets(tables)
        stale = stale_keys(deleted, keys)
        items = list(keys.items())
        members = [((key, pid), True) for key, pids in sets.items() for pid in sorted(pids)]
        try:
            # Sets are rebuilt whole: a member that left a segment while Redis was away must go.
            old_sets = [k async for k in client.scan_iter(match=f"{serving.SEGMENT}*", count=1000)]
            for start in range(0, len(old_sets), batch_size):
                await client.delete(*old_sets[start : start + batch_size])
            for start in range(0, len(items), batch_size):
                await write_hashes(client, dict(items[start : start + batch_size]), settings.redis_ttl_seconds)
            for start in range(0, len(members), batch_size):
                await write_hashes(client, {}, settings.redis_ttl_seconds, dict(members[start : start + batch_size]))
            for start in range(0, len(stale), batch_size):
                await client.delete(*stale[start : start + batch_size])
        except (RedisError, OSError) as exc:
            raise StackError(f"writing to Redis at {settings.redis_url} failed: {exc}") from exc
        counts = Counter([*(serving.family(k) for k in keys), *(serving.family(k) for k in sets)])
        counts["deleted"] = len(stale)
        return counts, read
    finally:
        await client.aclose()


@click.command("rebuild-redis")
@click.option("--batch-size", type=click.IntRange(1), default=1000, show_default=True,
              help="Keys per Redis pipeline.")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds allowed to read each changelog to its end.")
def rebuild_redis(batch_size: int, timeout: float) -> None:
    """Restore every Redis serving key from the tables' changelog topics.

    Use it after Redis lost its data (restart without persistence, eviction, FLUSHALL):
    workers may keep running. Reads KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and PERSONA_APP_ID
    like the worker; writes each key with PERSONA_REDIS_TTL_SECONDS.
    """
    from app.serving import keys as serving

    # The clear error below says it; aiokafka's own connection logs would only repeat it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        settings = Settings.from_env()
        counts, read = asyncio.run(rebuild(settings, batch_size, timeout))
    except PersonaError as exc:
        raise click.ClickException(str(exc)) from exc
    for topic, n in read.items():
        click.echo(f"read {n} records from {topic}")
    for name in serving.FAMILIES:
        click.echo(f"{name}: {counts.get(name, 0)} keys")
    click.echo(f"wrote {sum(counts[name] for name in serving.FAMILIES)} keys to Redis")
    click.echo(f"deleted {counts.get('deleted', 0)} stale keys (erased or absorbed state)")
