"""Clickstream batch records (``schemas/clickstream-batch.v1.json``), as publishers build them.

Used by the HTTP endpoint (``POST /v1/events`` publishes a request's accepted events of one
visitor as batch records) and by the simulator (app/simulator/batches.py). The worker reads
them in app/events/validation.py (:meth:`~app.events.validation.Validator.clickstream_items`).

Examples
--------
>>> import orjson
>>> doc = orjson.loads(encode("b1", [b'{"event_id":"e1"}', b'{"event_id":"e2"}']))
>>> doc["batch_id"], [e["event_id"] for e in doc["events"]]
('b1', ['e1', 'e2'])
>>> [len(run) for run in runs([b"x" * 40] * 5, max_bytes=300)]  # each run's record within 300 bytes
[3, 2]
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from app.events.positions import chunks

#: The schema's limit of events per batch record.
MAX_EVENTS = 1000
#: What :func:`encode` adds around the events, besides the id itself.
_WRAPPER = len(orjson.dumps({"schema_version": 1, "batch_id": "", "events": []}))
#: Longest batch id (the schema's limit).
MAX_ID = 128
#: The most bytes :func:`encode` adds to its events' bytes and the commas between them.
RECORD_OVERHEAD = _WRAPPER + MAX_ID


def encode(batch_id: str, events: Sequence[bytes]) -> bytes:
    """The batch record of ``events`` (each an encoded clickstream event of one visitor), in order."""
    head = orjson.dumps({"schema_version": 1, "batch_id": batch_id[:MAX_ID]})[:-1]
    return head + b',"events":[' + b",".join(events) + b"]}"


def runs(events: Sequence[bytes], max_bytes: int, max_events: int = MAX_EVENTS) -> list[list[bytes]]:
    """``events`` cut, in order, into runs whose batch records stay within ``max_bytes`` (an event
    too large on its own gets a run of its own)."""
    return chunks(events, max_events, max_bytes, RECORD_OVERHEAD)
