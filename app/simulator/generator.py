"""The whole simulated stream: every customer's records merged in time order.

:func:`iter_records` is lazy: it keeps one pending record per customer in a
heap (plus the few publisher-retry copies not yet due), so memory grows with
the number of customers, not with the number of records.

Customers' sessions are generated only when their start time comes up in the
merge (see :meth:`CustomerStream.records`), so the first record arrives quickly
even for a large population.

On top of the customers' valid records it injects

* malformed records: before each valid record, with probability
  ``malformed_share``, a corrupted copy is emitted (repeatedly, so the expected
  share of malformed records among all records is exactly ``malformed_share``);
* publisher retries: with probability ``duplicate_share`` a valid clickstream
  event is emitted a second time, byte for byte, 50 ms to 5 s later.

Records leave in non-decreasing order of the time they are *sent*. That is the
event timestamp for every record except retry copies (sent later than the
timestamp they carry) and timestamp_out_of_range records (which carry a wrong
time on purpose).

Examples
--------
>>> from datetime import datetime, UTC
>>> config = SimConfig(seed=1, customers=20, end=datetime(2024, 3, 1, tzinfo=UTC), max_events=500)
>>> records = list(iter_records(config))
>>> len(records), {r.topic for r in records} == {"clickstream", "crm-profiles"}
(500, True)
>>> records == list(iter_records(config))
True
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from typing import Final

from app.simulator.behaviour import CustomerStream, World
from app.simulator.catalog import Catalog
from app.simulator.config import SimConfig
from app.simulator.malformed import Malformer
from app.simulator.population import build_population
from app.simulator.record import SimRecord

DUPLICATE_DELAY_MS: Final = (50, 5000)


def iter_records(config: SimConfig) -> Iterator[SimRecord]:
    """Generate the records of ``config`` lazily, in send-time order.

    Parameters
    ----------
    config : SimConfig
        Validated here; equal configs give byte-identical records.

    Yields
    ------
    SimRecord
        Valid events, CRM records, malformed records and retry copies, with
        ground truth in ``truth``.

    Raises
    ------
    app.errors.ConfigError
        When ``config`` is invalid (raised by this call, before any generation).
    """
    return _generate(config.check())


def _generate(config: SimConfig) -> Iterator[SimRecord]:
    limit = config.max_events
    if limit == 0:
        return
    world = World.from_config(config, Catalog.build(config.seed))
    # Heap entries are (time, stream index, record, stream). The index is unique
    # among entries, so ties never compare records or generators.
    heap: list[tuple[int, int, SimRecord | None, Iterator[tuple[int, SimRecord | None]]]] = []
    for index, customer in enumerate(build_population(config)):
        stream = CustomerStream(customer, world).records()
        first = next(stream, None)
        if first is not None:
            heap.append((first[0], index, first[1], stream))
    heapq.heapify(heap)

    rng = random.Random(f"persona-sim/{config.seed}/injection")
    malformer = Malformer(rng, config.topics.clickstream, config.topics.crm_profiles)
    malformed_share = config.malformed_share
    duplicate_share = config.duplicate_share
    clickstream = config.topics.clickstream
    retries: list[tuple[int, int, SimRecord]] = []  # (send time, sequence, copy)
    sequence = 0
    emitted = 0
    heappop, heappush, heapreplace = heapq.heappop, heapq.heappush, heapq.heapreplace

    while heap or retries:
        if retries and (not heap or retries[0][0] < heap[0][0]):
            yield heappop(retries)[2]
            emitted += 1
            if emitted == limit:
                return
            continue
        ts, index, record, stream = heap[0]
        nxt = next(stream, None)
        if nxt is None:
            heappop(heap)
        else:
            heapreplace(heap, (nxt[0], index, nxt[1], stream))
        if record is None:
            continue  # a session-start marker: the session has just been generated
        if malformed_share:
            while rng.random() < malformed_share:
                yield malformer.corrupt(record)
                emitted += 1
                if emitted == limit:
                    return
        yield record
        emitted += 1
        if emitted == limit:
            return
        if duplicate_share and record.topic == clickstream and rng.random() < duplicate_share:
            assert record.truth is not None
            event_id = _event_id(record.value)
            sequence += 1
            heappush(retries, (ts + rng.randint(*DUPLICATE_DELAY_MS), sequence,
                               SimRecord(record.topic, record.key, record.value,
                                         {**record.truth, "duplicate_of": event_id})))


def _event_id(value: bytes) -> str:
    """The ``event_id`` of a generated event without parsing the whole document.

    Generated events start ``{"schema_version":1,"event_id":"<uuid>"``.

    >>> _event_id(b'{"schema_version":1,"event_id":"abc","type":"search"}')
    'abc'
    """
    start = value.index(b'"event_id":"') + 12
    return value[start:value.index(b'"', start)].decode()
