"""Source positions: where an event stands in its input partition when one Kafka record carries many.

Every state of this application skips the input it already reflects by comparing source
positions (tables/exact.py). A Kafka record may carry many events: a publisher's batch on
``clickstream`` (``schemas/clickstream-batch.v1.json``), or ingest's pack on
``<app_id>-profile-events`` (app/profiles/pack.py). Item ``i`` of the record at offset
``o`` stands at ``o * STRIDE + i``; a record of one event at ``o * STRIDE``. Positions order
exactly as the records and their items do, and a replayed record replays each of its events
at its old position.

The watermark and Faust's commits stay in Kafka offsets: only the states compare positions.

:func:`chunks` cuts many events' records into runs that one Kafka record each carries (ingest's
packs, app/profiles/pack.py, and publishers' batch records, app/events/batch_records.py).

Examples
--------
>>> position(7), position(7, 3), position(8) > position(7, STRIDE - 1)
(7168, 7171, True)
"""

from __future__ import annotations

from collections.abc import Sequence

#: Positions per Kafka record: a record carries at most this many events.
STRIDE = 1024


def position(offset: int, index: int = 0) -> int:
    """The source position of item ``index`` of the record at ``offset`` (``index`` 0 for a single event)."""
    if not 0 <= index < STRIDE:
        raise ValueError(f"item index {index} outside 0..{STRIDE - 1}")
    return offset * STRIDE + index


_SEP = b","


def chunks(records: Sequence[bytes], max_events: int, max_bytes: int, overhead: int) -> list[list[bytes]]:
    """``records`` cut, in order, into runs of at most ``max_events`` whose comma-joined bytes plus
    ``overhead`` (the wrapper around them) stay within ``max_bytes``; a record too large on its own
    gets a run of its own.

    >>> chunks([b"aa", b"bb", b"cc"], max_events=5, max_bytes=6, overhead=2)
    [[b'aa'], [b'bb'], [b'cc']]
    >>> chunks([b"aa", b"bb", b"cc"], max_events=2, max_bytes=99, overhead=2)
    [[b'aa', b'bb'], [b'cc']]
    """
    if not 1 <= max_events <= STRIDE:
        raise ValueError(f"max_events must be within 1..{STRIDE}, not {max_events}")
    runs: list[list[bytes]] = []
    current: list[bytes] = []
    size = overhead
    for record in records:
        grown = size + len(record) + (len(_SEP) if current else 0)
        if current and (len(current) >= max_events or grown > max_bytes):
            runs.append(current)
            current, grown = [], overhead + len(record)
        current.append(record)
        size = grown
    if current:
        runs.append(current)
    return runs
