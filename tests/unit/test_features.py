"""Feature definitions: one table, documented, and the vector read from a profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.profiles import features
from app.profiles import unified as profile
from app.sessions.state import ev

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


def test_docs_features_md_is_generated_from_the_definitions() -> None:
    assert (ROOT / "docs" / "features.md").read_text() == features.document()


def test_every_feature_is_documented_once_and_decayed_ones_have_their_half_life() -> None:
    names = [f.name for f in features.FEATURES]
    assert len(names) == len(set(names))
    assert all(f.meaning and f.update for f in features.FEATURES)
    decayed = {f.name: f.half_life_days for f in features.FEATURES if "decayed" in f.update}
    assert decayed == {"orders_decayed": 90, "revenue_decayed_log": 90, "activity_decayed_log": 14,
                       "email_opens_decayed": 30, "affinity:<category>": 30}
    assert features.HALF_LIFE == {"orders": 90 * DAY, "revenue": 90 * DAY, "events": 14 * DAY,
                                  "email": 30 * DAY, "affinity": 30 * DAY}


def test_vector_order_is_stable_and_named() -> None:
    names = features.vector_names()
    assert names[:3] == ("recency_days", "purchase_recency_days", "orders_decayed")
    assert names[-len(features.CATEGORIES):] == tuple(f"affinity:{c}" for c in features.CATEGORIES)
    assert len(features.vector(profile.new_state(), 0.0)) == len(names)


def test_vector_of_a_known_profile() -> None:
    events = [
        ev("v1", 0.0, "product_view", product_id="a", category="toys", price=1.0),
        ev("v2", 10.0, "product_view", product_id="b", category="books", price=1.0),
        ev("c1", 20.0, "add_to_cart", product_id="a", category="toys", price=1.0, quantity=1),
        ev("o1", 30.0, "purchase", order_id="o1", revenue=40.0, currency="GBP",
           items=[{"product_id": "a", "category": "toys", "price": 40.0, "quantity": 1}]),
        ev("o2", 2 * DAY, "purchase", order_id="o2", revenue=20.0, currency="GBP",
           items=[{"product_id": "b", "category": "books", "price": 20.0, "quantity": 1}]),
        ev("m1", 3 * DAY, "email_open", campaign_id="c"),
        ev("m2", 3 * DAY + 5, "email_open", campaign_id="c"),
        ev("m3", 3 * DAY + 9, "email_click", campaign_id="c"),
    ]
    events[0].data["context"]["device"] = {"type": "mobile"}
    events[1].data["context"]["device"] = {"type": "desktop"}
    events[2].data["context"]["device"] = {"type": "mobile"}
    state = None
    for i, e in enumerate(events):
        state, _ = profile.apply(state, e, i)
    assert state is not None
    now = 10 * DAY
    v = dict(zip(features.vector_names(), features.vector(state, now), strict=True))
    assert v["recency_days"] == pytest.approx(7.0, abs=1e-3)
    assert v["purchase_recency_days"] == pytest.approx(8.0)
    assert v["aov"] == pytest.approx(30.0)
    assert v["purchase_frequency_30d"] == pytest.approx(2 / 10 * 30)
    assert v["email_click_to_open"] == pytest.approx(0.5)
    assert v["cart_abandonments"] == 0 and v["cart_abandon_rate"] == 0
    assert (v["device_mobile"], v["device_desktop"], v["device_tablet"]) == pytest.approx((2 / 3, 1 / 3, 0))
    assert v["lifetime_events_log"] == pytest.approx(2.1972245773)  # log1p(8)
    # toys: view 1 + cart 3 + purchased line 5 at about day 0; books: view 1 + line 5 (at day 2)
    h = features.HALF_LIFE["affinity"]
    toys, books = 9.0, 1.0 + 5.0 * 2 ** (2 * DAY / h)
    assert v["affinity:toys"] == pytest.approx(toys / (toys + books), rel=1e-4)
    assert sum(v[f"affinity:{c}"] for c in features.CATEGORIES) == pytest.approx(1.0)
    assert v["quality_bot"] == 0.0


def test_a_profile_never_seen_reads_as_neutral() -> None:
    v = dict(zip(features.vector_names(), features.vector(profile.new_state(), 1e9), strict=True))
    assert v["recency_days"] == v["purchase_recency_days"] == features.RECENCY_CAP_DAYS
    assert all(v[n] == 0.0 for n in v if n not in ("recency_days", "purchase_recency_days"))
