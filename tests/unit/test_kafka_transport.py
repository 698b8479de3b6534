"""The worker's Kafka consumer is Faust's, with the fetch wait taken from the settings."""

from __future__ import annotations

import asyncio

import aiokafka

from app.runtime.faust_app import faust_app, settings
from app.runtime.kafka_transport import ConsumerThread, seeks_left_out


def test_worker_consumer_waits_at_most_the_configured_fetch_wait_not_fausts_1500_ms() -> None:
    async def build() -> aiokafka.AIOKafkaConsumer:
        thread = faust_app.consumer._thread
        assert isinstance(thread, ConsumerThread)
        return thread._create_worker_consumer(faust_app.transport)

    consumer = asyncio.run(build())
    assert settings.fetch_max_wait_ms == 50
    # AIOKafkaConsumer.start() hands this value to its Fetcher.
    assert consumer._fetch_max_wait_ms == 50
    assert settings.fetch_min_bytes == 1 and consumer._fetch_min_bytes == 1
    # Everything else stays Faust's own configuration.
    assert consumer._group_id == faust_app.conf.id
    assert consumer._enable_auto_commit is False


def test_stream_partitions_committed_at_0_or_never_are_sought_and_changelogs_left_to_recovery() -> None:
    committed = {"rewound": 0, "ahead": 12, "never_committed": None, "t-changelog": None, "u-changelog": 0}
    at_first, never = seeks_left_out(committed, lambda tp: tp.endswith("-changelog"))
    assert at_first == ["rewound"]
    assert never == ["never_committed"]
    assert seeks_left_out({"ahead": 1}, lambda tp: False) == ([], [])
