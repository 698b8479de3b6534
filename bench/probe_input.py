"""The latency probe's input: the bench input continued in time, by the same customers.

The latency target is set at half the rate the pipeline drained the input at, so the probe
must carry the same traffic as the drain: the same customers, their events in time order,
and event times *after* the drain's. :func:`continuation` replays the input's records
shifted ``round * span`` later, each clickstream event with a fresh ``event_id`` (a name-based
UUID of the round and the original id, so a publisher retry in the input stays a retry of
the same event), and everything else unchanged. Records that are not JSON objects (the
input's malformed records) are replayed as they are, and are dead-lettered as in the drain.

The probe used before 4 December (``--probe-input new-customers``) took a second simulator
population instead, over the input's own period. Its first 6,500 events (a probe of the
20,000-event input) came from 462 visitors, only 6 events of them from a visitor of the drain,
dated 2025-12-18 00:00-10:05, ten days before the drain's last event: new profiles, identity
links and merges for every visitor, and sessions already behind the stream clock, closed at
the next tick. That traffic cost the worker more than the drain's per event, so "half the
maximum rate" of the drain was not half of what the worker could do on it.

Examples
--------
>>> import orjson
>>> from app.simulator.record import SimRecord
>>> event = {"event_id": "e-1", "type": "page_view", "timestamp": "2025-12-18T00:05:41.229Z"}
>>> record = SimRecord("clickstream", b"anon-1", orjson.dumps(event), None)
>>> later = next(continuation([record], span=dt.timedelta(days=14), round_=1))
>>> moved = orjson.loads(later.value)
>>> moved["timestamp"], moved["event_id"] != "e-1", later.key
('2026-01-01T00:05:41.229Z', True, b'anon-1')
>>> next(continuation([record], dt.timedelta(days=14), 1)) == later   # deterministic
True
>>> junk = SimRecord("clickstream", b"k", b"{not json", None)
>>> next(continuation([junk], dt.timedelta(days=14), 1)) == junk
True
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Iterator

import orjson

from app.simulator.record import SimRecord

#: Namespace of the probe's event ids (uuid5 of ``<round>:<original event_id>``).
PROBE_NAMESPACE = uuid.UUID("5b0d7a52-3f1e-4c8e-9a57-70c0d1b2e4f1")
_CANONICAL_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def shifted_timestamp(text: str, shift: dt.timedelta) -> str:
    """``text`` moved by ``shift`` if it is a canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ``; otherwise unchanged.

    >>> shifted_timestamp("2025-12-31T23:59:59.999Z", dt.timedelta(milliseconds=1))
    '2026-01-01T00:00:00.000Z'
    >>> shifted_timestamp("yesterday", dt.timedelta(days=1))   # a malformed value stays malformed
    'yesterday'
    """
    if not _CANONICAL_TS.match(text):
        return text
    moved = dt.datetime.fromisoformat(text) + shift
    return f"{moved:%Y-%m-%dT%H:%M:%S}.{moved.microsecond // 1000:03d}Z"


def continued(value: bytes, shift: dt.timedelta, round_: int) -> bytes:
    """One record's value, ``shift`` later with a fresh event id; a value that is not a JSON object unchanged."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if not isinstance(doc, dict):
        return value
    if isinstance(doc.get("timestamp"), str):
        doc["timestamp"] = shifted_timestamp(doc["timestamp"], shift)
    if isinstance(doc.get("event_id"), str):
        doc["event_id"] = str(uuid.uuid5(PROBE_NAMESPACE, f"{round_}:{doc['event_id']}"))
    return orjson.dumps(doc)


def continuation(records: Iterable[SimRecord], span: dt.timedelta, round_: int) -> Iterator[SimRecord]:
    """The records of the input, ``round_ * span`` later, each event with a fresh id (see the module)."""
    shift = span * round_
    for record in records:
        yield SimRecord(record.topic, record.key, continued(record.value, shift, round_), None)
