"""Worker lifecycle: output-topic creation at start, the Redis flusher and self-heal, table gauges."""

from __future__ import annotations

import logging
import time

from app.runtime.faust_app import faust_app, output_topics, settings
from app.runtime.metrics import REDIS_LAG, TABLE_KEYS
from app.runtime.redis_heal import RedisHealer
from app.runtime.redis_sink import RedisSink

log = logging.getLogger(__name__)

redis_sink = RedisSink(settings.redis_url, settings.redis_ttl_seconds, settings.redis_max_pending)
REDIS_LAG.set_function(redis_sink.lag_seconds)
redis_healer = RedisHealer(
    faust_app, redis_sink, settings.app_id, settings.redis_check_seconds, settings.redis_rebuild_chunk
)


@faust_app.task
async def declare_output_topics() -> None:
    """Create every output topic at start, so downstream consumers can subscribe before data flows."""
    for topic in output_topics.values():
        await topic.maybe_declare()


@faust_app.timer(settings.redis_flush_interval)
async def flush_redis() -> None:
    await redis_sink.flush()


def watch_table_recoveries() -> None:
    """Every table tells the self-heal which partitions it holds after each recovery."""
    from tables.exact import ExactTable

    for table in faust_app.tables.values():
        if isinstance(table, ExactTable):
            table.on_recovered = redis_healer.on_recovered


watch_table_recoveries()


#: How often the self-heal looks at Redis and its queue (the marker itself every PERSONA_REDIS_CHECK_SECONDS).
HEAL_TICK_SECONDS = 0.5


@faust_app.timer(HEAL_TICK_SECONDS)
async def heal_redis() -> None:
    await redis_healer.tick()


#: A table whose count took ``t`` seconds is counted again no sooner than ``COUNT_BACKOFF * t``
#: later: counting a large RocksDB table must not take a noticeable share of the worker.
COUNT_BACKOFF = 20.0
_next_count_at: dict[str, float] = {}


@faust_app.timer(2.0)
async def export_table_sizes() -> None:
    from tables.exact import ExactTable

    for name, table in faust_app.tables.items():
        if time.monotonic() < _next_count_at.get(name, 0.0):
            continue
        began = time.monotonic()
        size = await table.count_state_keys() if isinstance(table, ExactTable) else len(table.data)
        TABLE_KEYS.labels(name).set(size)
        _next_count_at[name] = began + COUNT_BACKOFF * (time.monotonic() - began)
