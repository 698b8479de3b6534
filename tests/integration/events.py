"""Hand-written clickstream records for integration tests (the simulator makes bulk traffic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson


def iso(seconds_ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def event(event_id: str, anonymous_id: str, event_type: str = "page_view", **extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schema_version": 1,
        "event_id": event_id,
        "type": event_type,
        "timestamp": iso(60),
        "anonymous_id": anonymous_id,
    }
    doc.update(extra)
    return doc


def record(doc: dict[str, object]) -> tuple[bytes, bytes]:
    return str(doc["anonymous_id"]).encode(), orjson.dumps(doc)


def product_view(event_id: str, anonymous_id: str) -> dict[str, object]:
    return event(
        event_id, anonymous_id, "product_view", properties={"product_id": "p1", "category": "shoes", "price": 59.5}
    )
