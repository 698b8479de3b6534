"""Publish simulator records to Kafka with aiokafka, paced or as fast as possible.

Records are appended to one open batch per topic-partition
(:meth:`AIOKafkaProducer.create_batch`) and each full batch is handed over with
:meth:`~AIOKafkaProducer.send_batch`, whose delivery futures are gathered in
chunks; nothing waits for a single record. Measured on the embedded broker this
sends about 3.5 times as many records per second as one ``send()`` per record,
whose per-record bookkeeping (and pure-Python key hashing) dominate. Partitions
are chosen exactly as aiokafka's default partitioner does for ``send()``
(murmur2 of the key), cached per key since keys repeat.

Open batches are flushed when full and at least every :data:`LINGER_S`, so slow
rates still deliver promptly. Pacing is a token bucket checked every few
hundred records (every record at low rates), which keeps the average rate
accurate from a handful to 100,000+ records per second without a sleep per
record.

Examples
--------
>>> parse_bootstrap("kafka://broker-1:9092;kafka://broker-2:9092")
'broker-1:9092,broker-2:9092'
>>> parse_bootstrap(" 127.0.0.1:9092 ")
'127.0.0.1:9092'
>>> parse_bootstrap("localhost")
Traceback (most recent call last):
...
app.errors.ConfigError: bootstrap server 'localhost' must be host:port
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Protocol

from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from app.errors import ConfigError
from app.simulator.errors import ProduceError
from app.simulator.record import SimRecord
from app.simulator.stats import ProduceStats

LINGER_S: Final = 0.005  # longest a record waits in an open batch (the client's linger_ms)
MAX_BATCH_BYTES: Final = 256 * 1024
MAX_CHECK_EVERY: Final = 500  # records between pacing/stop checks at high rates
MAX_PENDING_FUTURES: Final = 256  # delivery futures collected before they are checked
_KEY_CACHE_LIMIT: Final = 1_000_000


class Batch(Protocol):
    """The part of aiokafka's ``BatchBuilder`` used here."""

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None) -> Any: ...

    def close(self) -> None: ...


class Producer(Protocol):
    """The part of :class:`aiokafka.AIOKafkaProducer` used here (tests pass a fake)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def partitions_for(self, topic: str) -> set[int]: ...

    def create_batch(self) -> Batch: ...

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Awaitable[Any]: ...


def parse_bootstrap(servers: str) -> str:
    """Bootstrap servers in aiokafka's ``host:port,host:port`` form.

    Accepts that form, Faust's ``kafka://host:port;kafka://host:port`` and
    mixtures of both.

    Raises
    ------
    ConfigError
        When no server is given or one lacks a numeric port.
    """
    result = []
    for part in servers.replace(";", ",").split(","):
        server = part.strip().removeprefix("kafka://").rstrip("/")
        if not server:
            continue
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bootstrap server {server!r} must be host:port")
        result.append(server)
    if not result:
        raise ConfigError("no bootstrap server given")
    return ",".join(result)


def _aiokafka_producer(bootstrap_servers: str) -> Producer:
    from aiokafka import AIOKafkaProducer

    producer: Producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id="persona-simulator",
        linger_ms=int(LINGER_S * 1000),
        max_batch_size=MAX_BATCH_BYTES,
        # Retries are simulated on purpose; the client must neither add duplicates
        # of its own nor drop ours, so idempotence stays off; acks=1 keeps latency low.
        acks=1,
        enable_idempotence=False,
        request_timeout_ms=30_000,
    )
    return producer


class _Batcher:
    """One open batch per topic-partition, handed to the producer when full or lingering."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.partitioner = DefaultPartitioner()
        self.partitions: dict[str, list[int]] = {}
        self.partition_of: dict[tuple[str, bytes], int] = {}
        self.open: dict[tuple[str, int], Batch] = {}
        self.futures: list[Awaitable[Any]] = []
        self.flushed_at = time.perf_counter()

    async def _partition(self, topic: str, key: bytes) -> int:
        partitions = self.partitions.get(topic)
        if partitions is None:
            partitions = self.partitions[topic] = sorted(await self.producer.partitions_for(topic))
        if len(self.partition_of) >= _KEY_CACHE_LIMIT:
            self.partition_of.clear()
        partition: int = self.partitioner(key, partitions, partitions)
        self.partition_of[(topic, key)] = partition
        return partition

    async def add(self, record: SimRecord) -> None:
        topic = record.topic
        partition = self.partition_of.get((topic, record.key))
        if partition is None:
            partition = await self._partition(topic, record.key)
        batch = self.open.get((topic, partition))
        if batch is None:
            batch = self.open[(topic, partition)] = self.producer.create_batch()
        if batch.append(timestamp=None, key=record.key, value=record.value) is None:
            # Full (and now closed): send it; a fresh batch always takes one record.
            await self._send(topic, partition, batch)
            batch = self.open[(topic, partition)] = self.producer.create_batch()
            batch.append(timestamp=None, key=record.key, value=record.value)

    async def _send(self, topic: str, partition: int, batch: Batch) -> None:
        batch.close()
        self.futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        if len(self.futures) >= MAX_PENDING_FUTURES:
            await self.settle(wait=False)

    async def flush(self, *, force: bool = False) -> None:
        """Send every open batch, at most every :data:`LINGER_S` unless ``force``."""
        now = time.perf_counter()
        if not force and now - self.flushed_at < LINGER_S:
            return
        self.flushed_at = now
        batches, self.open = self.open, {}
        for (topic, partition), batch in batches.items():
            await self._send(topic, partition, batch)

    async def settle(self, *, wait: bool) -> None:
        """Raise the first delivery error; with ``wait``, wait for every delivery."""
        if wait:
            futures, self.futures = self.futures, []
            await asyncio.gather(*futures)
            return
        # Deliveries complete in order per partition; keep the ones still pending.
        pending = []
        for future in self.futures:
            if isinstance(future, asyncio.Future) and future.done():
                future.result()
            else:
                pending.append(future)
        self.futures = pending


async def produce(
    records: Iterable[SimRecord],
    bootstrap_servers: str,
    rate: float | None,
    stop: asyncio.Event | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    producer_factory: Callable[[str], Producer] | None = None,
) -> ProduceStats:
    """Send ``records`` to Kafka and wait until every one is acknowledged.

    Parameters
    ----------
    records : iterable of SimRecord
        Consumed lazily (generation runs in this event loop, between sends).
    bootstrap_servers : str
        ``host:port[,host:port]``; a ``kafka://`` prefix is accepted.
    rate : float or None
        Records per second; ``None`` or 0 sends as fast as the broker takes them.
    stop : asyncio.Event, optional
        When set, no further record is taken; those taken are flushed and awaited.
    progress : callable, optional
        Called with the number of records taken so far, every few hundred records.
    producer_factory : callable, optional
        Builds the producer from the bootstrap string (default: an
        :class:`aiokafka.AIOKafkaProducer`); tests pass a fake.

    Returns
    -------
    ProduceStats
        Per-topic counts, malformed and duplicate counts, elapsed seconds.

    Raises
    ------
    ProduceError
        When the broker cannot be reached or refuses a record.
    ConfigError
        When ``bootstrap_servers`` or ``rate`` is invalid.
    """
    if rate is not None and rate < 0:
        raise ConfigError(f"rate must not be negative, got {rate}")
    servers = parse_bootstrap(bootstrap_servers)
    producer = (producer_factory or _aiokafka_producer)(servers)
    try:
        await producer.start()
    except Exception as exc:
        await _quiet_stop(producer)
        raise ProduceError(f"cannot connect to Kafka at {servers}: {exc}") from exc

    stats = ProduceStats()
    check_every = MAX_CHECK_EVERY if not rate else max(1, min(MAX_CHECK_EVERY, int(rate / 200)))
    batcher = _Batcher(producer)
    started = time.perf_counter()
    sent = 0
    try:
        if stop is not None and stop.is_set():
            stats.stopped = True
        else:
            add, count = batcher.add, stats.count
            for record in records:
                await add(record)
                count(record)
                sent += 1
                if sent % check_every == 0:
                    await batcher.flush()
                    if progress is not None:
                        progress(sent)
                    if await _pace(started, sent, rate, stop):
                        stats.stopped = True
                        break
        await batcher.flush(force=True)
        await batcher.settle(wait=True)
        await producer.stop()
    except BaseException as exc:
        await _quiet_stop(producer)
        if isinstance(exc, KafkaTimeoutError):
            raise ProduceError(
                f"Kafka at {servers} did not answer in time (does the topic exist, "
                f"or may the broker create it?): {exc!r}"
            ) from exc
        if isinstance(exc, KafkaError):
            raise ProduceError(f"Kafka at {servers} refused a record: {exc!r}") from exc
        raise
    stats.elapsed = time.perf_counter() - started
    if progress is not None:
        progress(sent)
    return stats


async def _pace(started: float, sent: int, rate: float | None, stop: asyncio.Event | None) -> bool:
    """Sleep off any lead over ``rate``; True when ``stop`` is set."""
    delay = started + sent / rate - time.perf_counter() if rate else 0.0
    if stop is None:
        await asyncio.sleep(max(delay, 0.0))
        return False
    if stop.is_set():
        return True
    if delay <= 0:
        # Let the producer's sender task and signal handlers run.
        await asyncio.sleep(0)
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        return False
    return True


async def _quiet_stop(producer: Producer) -> None:
    # Closing after a failure must not mask the failure.
    with contextlib.suppress(Exception):
        await producer.stop()
