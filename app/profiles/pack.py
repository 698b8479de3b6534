"""Packs: many profile-events records of one partition carried by one Kafka record.

Ingest forwards every applied event to ``<app_id>-profile-events``. One Kafka record per
event cost the pipeline a produce and a consume per event (a bare Faust agent alone costs
about 90 µs of CPU per record consumed, docs/benchmarks.md); a *pack* carries every
event of an ingest batch that goes to one partition::

    {"events": [<record>, <record>, ...]}

where each ``<record>`` is exactly the single-event record it replaces (``profile_id``,
``ts``, ``event``, ``produced_at``). A pack is sent to the partition its records' keys
hash to, so a profile's events and its control records (merges, splits, traits) still
share one partition and one order.

Exactness needs a position per event, not per Kafka record: the fold
(app/profiles/fold.py) applies item ``i`` of a pack at its own source position
(app/events/positions.py), so a replayed pack replays each of its events at its old position.

Examples
--------
>>> import orjson
>>> packs = pack([b'{"a":1}', b'{"b":2}', b'{"c":3}'], max_events=2)
>>> packs
[b'{"events":[{"a":1},{"b":2}]}', b'{"events":[{"c":3}]}']
>>> [len(orjson.loads(p)["events"]) for p in packs]
[2, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

from app.events.positions import STRIDE, chunks

#: A pack stays well under the producer's default request size (1 MB) whatever its events'
#: sizes (each clickstream record is at most ``PERSONA_MAX_RECORD_BYTES``, 64 KiB by default).
MAX_PACK_BYTES = 512 * 1024

_OPEN, _SEP, _CLOSE = b'{"events":[', b",", b"]}"


def pack(records: Sequence[bytes], max_events: int = STRIDE, max_bytes: int = MAX_PACK_BYTES) -> list[bytes]:
    """Join encoded single-event records into as few packs as ``max_events`` and ``max_bytes`` allow, in order.

    A record larger than ``max_bytes`` on its own still gets a pack (of one): nothing is dropped.
    """
    overhead = len(_OPEN) + len(_CLOSE)
    return [_OPEN + _SEP.join(chunk) + _CLOSE for chunk in chunks(records, max_events, max_bytes, overhead)]
