"""Build dead-letter records (``schemas/dead-letters.v1.json``) for refused input.

>>> record = dead_letter(b'{"oops', Rejection("invalid_json", "not valid JSON"),
...                      topic="clickstream", partition=0, offset=7, key=b"a1",
...                      timestamp_ms=None, now=0.0)
>>> record["dead_letter_id"], record["payload"]["text"], record["source"]["key_base64"]
('clickstream:0:7', '{"oops', 'YTE=')

One event of a batch record: its own bytes, and its index in the batch.

>>> one = dead_letter(b'{"type":"x"}', Rejection("unknown_type", "unknown event type 'x'"), topic="clickstream",
...                   partition=0, offset=7, key=None, timestamp_ms=None, now=0.0, index=2)
>>> one["dead_letter_id"], one["source"]["index"]
('clickstream:0:7:2', 2)
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from app.events.validation import Rejection


def dead_letter(
    raw: bytes,
    rejection: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    timestamp_ms: int | None,
    now: float,
    index: int | None = None,
) -> dict[str, Any]:
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    source: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key_base64": base64.b64encode(key).decode() if key is not None else None,
        "timestamp_ms": timestamp_ms,
    }
    if index is not None:
        source["index"] = index
    return {
        "schema_version": 1,
        # Same source position, same id: a replay's duplicate dead letter can be dropped downstream.
        "dead_letter_id": f"{topic}:{partition}:{offset}" + (f":{index}" if index is not None else ""),
        "source": source,
        "reason": rejection.as_dict(),
        "payload": {"base64": base64.b64encode(raw).decode(), "text": text, "size": len(raw)},
        "received_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
    }
