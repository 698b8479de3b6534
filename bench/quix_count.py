"""Scenario (b): Quix Streams per-user stateful count (RocksDB state with its changelog topic).

Run by the harness as ``python -m bench.quix_count`` with ``BENCH_BOOTSTRAP``,
``BENCH_TOPIC``, ``BENCH_APP_ID``, ``BENCH_STATE_DIR``, ``BENCH_STATUS``, ``BENCH_TOTAL``
and ``BENCH_PROBE`` in the environment. Keys and values are read as bytes (the count
needs only the key, which is the ``anonymous_id``); the count per key lives in Quix's
RocksDB store and every update goes to its changelog topic. With ``BENCH_BATCHED``
(batch records, ``persona bench --batch-events``) it counts the events of each record,
so it parses each value.

The embedded broker answers DescribeConfigs with no entries, and Quix reads
``retention.ms`` of the source topic to derive its changelog's config, which fails
with ``KeyError: 'retention.ms'``. :func:`tolerate_missing_topic_configs` wraps Quix's
topic-config read *in this process only* (no change to site-packages) so that missing
retention settings default to ``-1`` (unlimited), the broker's actual behaviour.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from bench.progress import Progress

DEFAULT_TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1"}


def tolerate_missing_topic_configs() -> None:
    """Make Quix's ``TopicAdmin.inspect_topics`` fill absent retention configs with defaults."""
    from quixstreams.models.topics.admin import TopicAdmin

    original = TopicAdmin.inspect_topics
    if getattr(original, "_bench_wrapped", False):
        return

    def inspect_topics(self: TopicAdmin, topic_names: list[str], timeout: float = 30) -> dict[str, Any]:
        configs = original(self, topic_names, timeout=timeout)
        for config in configs.values():
            if config is not None:
                for name, value in DEFAULT_TOPIC_CONFIGS.items():
                    config.extra_config.setdefault(name, value)
        return configs

    inspect_topics._bench_wrapped = True  # type: ignore[attr-defined]
    TopicAdmin.inspect_topics = inspect_topics  # type: ignore[method-assign,unused-ignore]


def main() -> None:
    tolerate_missing_topic_configs()
    from quixstreams import Application

    progress = Progress.from_env()
    app = Application(
        broker_address=os.environ["BENCH_BOOTSTRAP"],
        consumer_group=os.environ["BENCH_APP_ID"],
        auto_offset_reset="earliest",
        state_dir=os.environ["BENCH_STATE_DIR"],
        use_changelog_topics=True,
        loglevel="WARNING",
    )
    topic = app.topic(os.environ["BENCH_TOPIC"], key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(topic)
    seen = progress.seen
    batched = bool(os.environ.get("BENCH_BATCHED"))

    def count(value: bytes, key: bytes, timestamp: int, headers: Any, state: Any) -> None:
        state.set("count", state.get("count", 0) + 1)
        seen(timestamp / 1000)

    def count_events(value: bytes, key: bytes, timestamp: int, headers: Any, state: Any) -> None:
        # Batch records (``persona bench --batch-events``): the per-user count is of events, so the
        # value is parsed, the least a consumer of batch records does.
        try:
            doc = orjson.loads(value)
            events = len(doc["events"]) if isinstance(doc, dict) and isinstance(doc.get("events"), list) else 1
        except orjson.JSONDecodeError:
            events = 1
        state.set("count", state.get("count", 0) + events)
        seen(timestamp / 1000)

    sdf = sdf.update(count_events if batched else count, stateful=True, metadata=True)
    app.run(sdf)


if __name__ == "__main__":
    main()
