"""Categories that are not names (spaces, quotes, markup, accents, any unicode), sent over HTTP
and over Kafka, leave every stage processing: each makes its own interest segment."""

from __future__ import annotations

import json
import random
import urllib.parse
from typing import cast

import pytest

from tests.integration.conftest import Pipeline, get, post, wait_for
from tests.integration.events import event, iso, record

pytestmark = pytest.mark.integration

_rng = random.Random(19)
RANDOM_UNICODE = "".join(chr(_rng.choice([_rng.randint(0x21, 0xD7FF), _rng.randint(0xE000, 0x10FFFF)]))
                         for _ in range(24))
CATEGORIES = ["Home & Garden", "Crème brûlée", "<script>", "O'Neill", "a) or (monetary > 0", RANDOM_UNICODE]


def shopping(anonymous_id: str, category: str) -> list[dict[str, object]]:
    """A view, a cart add and a purchase of one product of ``category``."""
    item = {"product_id": "sku-1", "category": category, "price": 20.0}
    return [
        event(f"{anonymous_id}-1", anonymous_id, "product_view", timestamp=iso(120), properties=item),
        event(f"{anonymous_id}-2", anonymous_id, "add_to_cart", timestamp=iso(110), properties={**item, "quantity": 1}),
        event(f"{anonymous_id}-3", anonymous_id, "purchase", timestamp=iso(100), properties={
            "order_id": f"o-{anonymous_id}", "items": [{**item, "quantity": 1}], "revenue": 20.0, "currency": "EUR"}),
    ]


def test_categories_that_are_not_names_leave_every_stage_processing_over_http_and_kafka(pipeline: Pipeline) -> None:
    by_kafka = {f"anon-k{i}": category for i, category in enumerate(CATEGORIES)}
    by_http = {f"anon-h{i}": category for i, category in enumerate(CATEGORIES)}
    pipeline.produce(pipeline.topics.clickstream,
                     [record(doc) for anon, category in by_kafka.items() for doc in shopping(anon, category)])
    _, port = pipeline.start_worker()
    for anon, category in by_http.items():
        status, body = post(port, "/v1/events", json.dumps(shopping(anon, category)).encode())
        assert status == 202 and body["accepted"] == 3, body
    # A plain visitor after all of them: served only if every stage went on past the others.
    pipeline.produce(pipeline.topics.clickstream, [record(event("last-1", "anon-last", timestamp=iso(50)))])

    def profile(anon: str) -> dict[str, object]:
        query = urllib.parse.urlencode({"type": "anonymous_id", "value": anon})
        return cast("dict[str, object]", get(port, f"/v1/profiles/lookup?{query}")[1])

    wait_for(lambda: profile("anon-last").get("events") == 1, 60,
             lambda: f"the visitor after the hostile categories was never served: {profile('anon-last')}")
    for anon, category in {**by_kafka, **by_http}.items():
        wait_for(lambda anon=anon, category=category: f"interest:{category}" in (profile(anon).get("segments") or []),
                 30, lambda anon=anon: f"{anon} never entered its interest segment: {profile(anon)}")
        assert profile(anon)["events"] == 3
    assert pipeline.metric(port, "persona_dead_letters_total") == 0
    status, health = get(port, "/health")
    assert status == 200, health
