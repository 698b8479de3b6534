"""Publisher-side batch records: what an SDK that queues and flushes a visitor's events would send.

Groups a clickstream in record order into batch records (``schemas/clickstream-batch.v1.json``):
one open batch per ``anonymous_id``, flushed when it holds ``max_events`` events, when the
visitor's next event happened more than ``flush_seconds`` after the batch's first, or when
its record (wrapper included) would pass ``max_bytes``; whatever is open at the end is flushed then. A batch goes
out when it is flushed, so each visitor's events keep their order. A record that is not a
parseable event (the simulator's malformed records) goes out alone, where it stood.

Examples
--------
>>> import orjson
>>> from app.simulator.record import SimRecord
>>> def ev(i, anon, t):
...     doc = {"event_id": f"e{i}", "anonymous_id": anon, "timestamp": f"2026-01-01T00:00:{t:02d}Z"}
...     return SimRecord("clickstream", anon.encode(), orjson.dumps(doc), None)
>>> out = batch_records([ev(1, "a", 0), ev(2, "b", 1), ev(3, "a", 2), ev(4, "a", 30)], max_events=10)
>>> [(r.key, [e["event_id"] for e in orjson.loads(r.value)["events"]]) for r in out]
[(b'a', ['e1', 'e3']), (b'b', ['e2']), (b'a', ['e4'])]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from app.events.batch_records import RECORD_OVERHEAD
from app.events.batch_records import encode as encode_batch
from app.events.validation import parse_timestamp
from app.simulator.record import SimRecord

#: How long an SDK queues a visitor's events before it flushes them (event time).
FLUSH_SECONDS = 10.0
#: Most bytes of a batch record, wrapper included: within the worker's default ``PERSONA_MAX_RECORD_BYTES`` (65536).
MAX_BATCH_BYTES = 60_000


@dataclass
class _Open:
    key: bytes
    topic: str
    first_ts: float
    values: list[bytes] = field(default_factory=list)
    #: The batch record's bytes so far, at most (the wrapper, each event and a comma after it).
    size: int = RECORD_OVERHEAD


def batch_records(
    records: Iterable[SimRecord],
    max_events: int,
    flush_seconds: float = FLUSH_SECONDS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> Iterator[SimRecord]:
    """The batch records of ``records`` (see the module docstring); ``max_events`` is at most 1000."""
    if not 1 <= max_events <= 1000:
        raise ValueError(f"max_events must be within 1..1000 (the batch schema's limit), not {max_events}")
    open_batches: dict[str, _Open] = {}
    count = 0
    for record in records:
        visitor, ts = _visitor_and_time(record.value)
        if visitor is None or ts is None:
            yield record
            continue
        current = open_batches.get(visitor)
        if current is not None and (
            len(current.values) >= max_events
            or ts - current.first_ts > flush_seconds
            or current.size + len(record.value) > max_bytes
        ):
            count += 1
            yield _flush(open_batches.pop(visitor), visitor, count)
            current = None
        if current is None:
            current = open_batches[visitor] = _Open(record.key, record.topic, ts)
        current.values.append(record.value)
        current.size += len(record.value) + 1
    for visitor, current in open_batches.items():
        count += 1
        yield _flush(current, visitor, count)


def _flush(batch: _Open, visitor: str, number: int) -> SimRecord:
    return SimRecord(batch.topic, batch.key, encode_batch(f"{visitor[:100]}-{number}", batch.values), None)


def _visitor_and_time(value: bytes) -> tuple[str | None, float | None]:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict) or not isinstance(doc.get("anonymous_id"), str):
        return None, None
    stamp = doc.get("timestamp")
    return doc["anonymous_id"], parse_timestamp(stamp) if isinstance(stamp, str) else None
