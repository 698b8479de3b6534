"""Count the changelog records a worker leaves after a clean SIGTERM.

Each of 200 events writes one activity record and the table writes a watermark every
100 events, so a worker that flushes everything leaves 202 records.

Run: ``.venv/bin/python -m bench.sigterm_changelog_probe [--trials 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.embedded.stack import EmbeddedStack
from tests.integration.conftest import Pipeline, wait_for
from tests.integration.events import event, record

IDS = [f"a{i}" for i in range(20)]
PER_ID = 10
EXPECTED = len(IDS) * PER_ID + 2


async def changelog_size(bootstrap: str, topic: str) -> tuple[int, int]:
    """(records actually read from the start, the end offset the broker reports)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        read = 0
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1500)
            if not batch:
                break
            read += sum(len(messages) for messages in batch.values())
        end = int((await consumer.end_offsets([tp]))[tp])
        return read, end
    finally:
        await consumer.stop()


def trial(stack: EmbeddedStack) -> tuple[tuple[int, int], float]:
    pipeline = Pipeline(stack, Path(tempfile.mkdtemp()))
    try:
        records = [record(event(f"e{n}-{i}", anon)) for n in range(PER_ID) for i, anon in enumerate(IDS)]
        pipeline.produce(pipeline.topics.clickstream, records)
        worker, _ = pipeline.start_worker()
        wait_for(
            lambda: all(pipeline.activity(anon).get("events") == str(PER_ID) for anon in IDS),
            60,
            lambda: "events not processed",
        )
        started = time.monotonic()
        worker.stop()
        return asyncio.run(changelog_size(stack.bootstrap, f"{pipeline.app_id}-activity-changelog")), (
            time.monotonic() - started
        )
    finally:
        pipeline.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    stack = EmbeddedStack(Path(tempfile.mkdtemp())).start()
    try:
        for n in range(args.trials):
            (read, end), stop_seconds = trial(stack)
            print(
                f"trial {n}: {read} changelog records read of {EXPECTED} expected "
                f"(broker's end offset: {end}); stop took {stop_seconds:.1f} s"
            )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
