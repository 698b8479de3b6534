"""The profiles stage through the real broker and Redis: sessions, features, serving lookups."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from tests.integration.conftest import Pipeline, get, wait_for
from tests.integration.events import event, iso, record

pytestmark = pytest.mark.integration

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "session-summaries.v1.json").read_text())
SEGMENT_SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "segment-changes.v1.json").read_text())
HOUR = 3600.0


def at(hours_ago: float, event_id: str, event_type: str = "page_view", **extra: object) -> dict[str, object]:
    return event(event_id, "anon-p", event_type, timestamp=iso(hours_ago * HOUR), **extra)




def test_sessions_close_into_summaries_and_the_profile_is_served_by_id_and_by_email(pipeline: Pipeline) -> None:
    shoe = {"product_id": "p1", "category": "shoes", "price": 80.0}
    first_session = [
        at(3.0, "s1", context={"page_url": "https://shop.example/landing", "device": {"id": "d1", "type": "mobile"}}),
        at(2.95, "s2", "identify", properties={"traits": {"email": "Ann.Lee@Example.com"}}),
        at(2.9, "s3", "product_view", properties=shoe),
        at(2.85, "s4", "add_to_cart", properties={**shoe, "quantity": 1}),
        at(2.8, "s5", "purchase", properties={"order_id": "o1", "items": [{**shoe, "quantity": 1}],
                                               "revenue": 80.0, "currency": "EUR"}),
    ]
    second_session = [at(1.0, "s6", "product_view", properties=shoe)]  # 1.8 h later: closes the first
    pipeline.produce(pipeline.topics.clickstream, [record(e) for e in first_session + second_session])
    _, port = pipeline.start_worker()

    summaries = pipeline.consume(pipeline.topics.session_summaries, expected=1)
    assert len(summaries) == 1
    summary = summaries[0]
    jsonschema.validate(summary, SCHEMA)
    assert summary["events"] == 5
    assert summary["cart_adds"] == 1 and summary["purchased"] is True and summary["revenue"] == 80.0
    assert summary["products_viewed"] == ["p1"] and summary["categories"] == ["shoes"]
    assert summary["landing_page"] == "https://shop.example/landing"
    assert summary["close_reason"] == "inactivity"

    query = urllib.parse.urlencode({"type": "email", "value": " ann.lee@example.COM "})
    wait_for(lambda: get(port, f"/v1/profiles/lookup?{query}")[0] == 200, 30,
             lambda: f"lookup by email never answered: {get(port, f'/v1/profiles/lookup?{query}')}")
    _, by_email = get(port, f"/v1/profiles/lookup?{query}")
    profile_id = str(by_email["profile_id"])
    wait_for(lambda: get(port, f"/v1/profiles/{profile_id}")[1].get("events") == 6, 30,
             lambda: f"profile never showed 6 events: {get(port, f'/v1/profiles/{profile_id}')}")
    _, profile = get(port, f"/v1/profiles/{profile_id}")
    assert profile["orders"] == 1
    assert "Ann" not in json.dumps(profile) and "example.com" not in json.dumps(profile).lower()

    assert "new_visitor" in profile["segments"]

    changes = pipeline.consume(pipeline.topics.segment_changes, expected=2)
    for change in changes:
        jsonschema.validate(change, SEGMENT_SCHEMA)
    assert {(c["segment_id"], c["change"]) for c in changes} >= {("new_visitor", "entered")}
    assert all(c["profile_id"] == profile_id for c in changes)

    assert get(port, "/v1/profiles/no-such-profile")[0] == 404
    assert get(port, "/v1/profiles/lookup?type=shoe_size&value=9")[0] == 400
    assert get(port, "/v1/profiles/lookup?type=email&value=nobody%40nowhere.example")[0] == 404
