"""Scenario (a): a bare Faust agent that consumes one topic and counts, nothing else.

Run by the harness as ``python -m bench.faust_passthrough worker -l warn`` with
``BENCH_BOOTSTRAP``, ``BENCH_TOPIC``, ``BENCH_APP_ID``, ``BENCH_STATUS``, ``BENCH_TOTAL``
and ``BENCH_PROBE`` in the environment. Same Faust version and client settings family
as the pipeline's app (raw serializers, earliest offset reset, memory store), no web server.
"""

from __future__ import annotations

import os

import faust
from faust.types import StreamT

from bench.progress import Progress

app = faust.App(
    os.environ.get("BENCH_APP_ID", "bench-faust"),
    broker=f"kafka://{os.environ.get('BENCH_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://",
    datadir=os.environ.get("BENCH_DATA_DIR", ".persona/bench-faust"),
    topic_partitions=1,
    key_serializer="raw",
    value_serializer="raw",
    web_enabled=False,
    autodiscover=False,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=1.0,
)
topic = app.topic(
    os.environ.get("BENCH_TOPIC", "bench"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=1,
)
progress: Progress | None = None


@app.agent(topic, name="passthrough")
async def passthrough(stream: StreamT) -> None:
    global progress
    if progress is None:
        progress = Progress.from_env()
    seen = progress.seen
    async for event in stream.events():
        seen(event.message.timestamp)


if __name__ == "__main__":
    app.main()
