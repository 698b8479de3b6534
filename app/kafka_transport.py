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

It fixes one thing more: Faust seeks every stream partition to its committed offset after
each recovery (``perform_seek``) through aiokafka's ``seek_to_committed``, which seeks only
to a committed offset above 0 (``if offset and offset > 0``). A partition whose committed
offset became 0 after its assignment (an exact table rewinding its input to the first offset,
tables/exact.py) was left where the assignment had put it, and its records were never read
again. :meth:`ConsumerThread.seek_to_committed` seeks those partitions to 0 too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

P = TypeVar("P")


def skipped_seeks(committed: Mapping[P, int | None]) -> list[P]:
    """The partitions aiokafka's ``seek_to_committed`` leaves alone though they have a committed offset: offset 0.

    >>> skipped_seeks({"a": 0, "b": 12, "c": None})
    ['a']
    """
    return [tp for tp, offset in committed.items() if offset == 0]


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

    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Seek every assigned partition to its committed offset, 0 included (see the module docstring)."""
        return await self.call_thread(self._seek_to_committed)

    async def _seek_to_committed(self) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        committed: Mapping[Any, int] = await consumer.seek_to_committed()
        for tp in skipped_seeks(committed):
            consumer.seek(tp, 0)
        return committed


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """faust-streaming's aiokafka transport with :class:`Consumer`."""

    Consumer: ClassVar[Any] = Consumer



async def key_partitioner(producer: Any, topic: str) -> Callable[[bytes], int]:
    """The partition ``producer.send(topic, key=key)`` would pick for a key: its own partitioner, on its metadata.

    For records sent to an explicit partition that must land where their key's records do
    (ingest's packs of profile-events records, tables/profile_pack.py). ``producer`` is Faust's
    aiokafka ``Producer``; ``partitions_for`` loads the topic's metadata the first time, as a
    send would; the function returned then needs no more waiting.
    """
    await producer._ensure_producer().partitions_for(topic)
    return lambda key: int(producer.key_partition(topic, key).partition)
