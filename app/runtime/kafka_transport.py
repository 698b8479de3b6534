"""The Kafka transport of the worker: faust-streaming's aiokafka driver with a configurable fetch wait.

faust-streaming 0.15.3 builds its worker consumer with ``fetch_max_wait_ms=1500``
written into the call (``faust/transport/drivers/aiokafka.py``,
``_create_worker_consumer``) and has no setting for it. On the embedded broker a
fetch is held for that full wait, so every record waited up to 1.5 s before the
agent saw it (measured p50 1.4-1.7 s; 27-36 ms with 50 ms, docs/benchmarks.md).

This module keeps Faust's consumer exactly as Faust builds it and changes that one
value (and ``fetch_min_bytes``, which Faust leaves at aiokafka's 1) on the new, not yet
started, aiokafka consumer: ``AIOKafkaConsumer`` reads ``_fetch_max_wait_ms`` and
``_fetch_min_bytes`` only when ``start()`` creates its fetcher. Everything else
(group, assignor, commits, recovery) is Faust's. The override is isolated here so it
can be dropped when Faust grows a setting.

It fixes one thing more. After each recovery Faust seeks every stream partition to its
committed offset (``perform_seek``) through aiokafka's ``seek_to_committed``, which seeks
only to a committed offset above 0 (``if offset and offset > 0``) and leaves every other
partition where its fetcher stands. Two kinds of stream partition were left there wrongly:

* committed at 0, after the assignment: an exact table rewinding its input to the first
  offset (tables/exact.py). Its records were never read again.
* never committed (a worker killed before its first commit): the fetcher had already fetched
  and buffered its records during recovery, and Faust dropped them, because Faust pauses a
  partition only in its own bookkeeping (``Consumer.pause_partitions``) and discards what
  aiokafka hands over for a partition it paused meanwhile. The fetcher stood past records
  nobody processed, until the next restart (seen as a restarted worker that processed
  nothing: tests/integration/test_recovery.py).

:meth:`ConsumerThread.seek_to_committed` seeks the first to 0 and resets the second by the
app's ``consumer_auto_offset_reset``, as aiokafka does when it assigns a partition without
a committed offset. Changelog partitions are left to Faust's recovery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, cast

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

P = TypeVar("P")


def seeks_left_out(committed: Mapping[P, int | None], is_changelog: Callable[[P], bool]) -> tuple[list[P], list[P]]:
    """The stream partitions aiokafka's ``seek_to_committed`` leaves where its fetcher stands.

    Returns the partitions committed at offset 0, then those never committed; changelog
    partitions (``is_changelog``) are Faust's recovery's and are not listed.

    >>> seeks_left_out({"a": 0, "b": 12, "c": None, "c-changelog": None}, lambda tp: tp.endswith("-changelog"))
    (['a'], ['c'])
    """
    streams = {tp: offset for tp, offset in committed.items() if not is_changelog(tp)}
    at_first = [tp for tp, offset in streams.items() if offset == 0]
    return at_first, [tp for tp, offset in streams.items() if offset is None]


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; the worker consumer gets the app's ``fetch_max_wait_ms`` and ``fetch_min_bytes``."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it creates the Fetcher (aiokafka 0.14).
            consumer._fetch_max_wait_ms = int(wait_ms)
        min_bytes = getattr(self.app, "fetch_min_bytes", None)
        if min_bytes is not None:
            consumer._fetch_min_bytes = int(min_bytes)
        return consumer

    async def seek_to_committed(self) -> Mapping[Any, int]:  # Faust's stub; aiokafka gives None too
        """Seek every assigned stream partition to its committed offset, 0 and none included (module docstring)."""
        return await self.call_thread(self._seek_to_committed)

    async def _seek_to_committed(self) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
        at_first, never = seeks_left_out(committed, self.consumer._is_changelog_tp)
        for tp in at_first:
            consumer.seek(tp, 0)
        if never:
            latest = self.app.conf.consumer_auto_offset_reset == "latest"
            await (consumer.seek_to_end if latest else consumer.seek_to_beginning)(*never)
        return cast("Mapping[Any, int]", committed)


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """faust-streaming's aiokafka transport with :class:`Consumer`."""

    Consumer: ClassVar[Any] = Consumer



async def key_partitioner(producer: Any, topic: str) -> Callable[[bytes], int]:
    """The partition ``producer.send(topic, key=key)`` would pick for a key: its own partitioner, on its metadata.

    For records sent to an explicit partition that must land where their key's records do
    (ingest's packs of profile-events records, app/profiles/pack.py). ``producer`` is Faust's
    aiokafka ``Producer``; ``partitions_for`` loads the topic's metadata the first time, as a
    send would; the function returned then needs no more waiting.
    """
    await producer._ensure_producer().partitions_for(topic)
    return lambda key: int(producer.key_partition(topic, key).partition)
