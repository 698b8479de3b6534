"""Source positions: where an event stands in its input partition when one Kafka record carries many.

Every state of this application skips the input it already reflects by comparing source
positions (tables/exact.py). A Kafka record may carry many events: a publisher's batch on
``clickstream`` (``schemas/clickstream-batch.v1.json``), or ingest's pack on
``<app_id>-profile-events`` (tables/profile_pack.py). Item ``i`` of the record at offset
``o`` stands at ``o * STRIDE + i``; a record of one event at ``o * STRIDE``. Positions order
exactly as the records and their items do, and a replayed record replays each of its events
at its old position.

The watermark and Faust's commits stay in Kafka offsets: only the states compare positions.

Examples
--------
>>> position(7), position(7, 3), position(8) > position(7, STRIDE - 1)
(7168, 7171, True)
"""

from __future__ import annotations

#: Positions per Kafka record: a record carries at most this many events.
STRIDE = 1024


def position(offset: int, index: int = 0) -> int:
    """The source position of item ``index`` of the record at ``offset`` (``index`` 0 for a single event)."""
    if not 0 <= index < STRIDE:
        raise ValueError(f"item index {index} outside 0..{STRIDE - 1}")
    return offset * STRIDE + index
