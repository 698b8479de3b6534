"""The unified profile: counters against an independent recomputation, replay, decay, carts, traits, hooks."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.events import dedupe
from app.events.validation import Event, Validator
from app.profiles import features
from app.profiles import unified as profile
from app.profiles.unified import ProfileConfig, age_band, apply_traits, pending_abandonment
from app.sessions.state import ev
from app.simulator import SimConfig, iter_records
from tables.hooks import REGISTRY, apply_change, apply_erasure

END = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = 3600.0


def simulated(seed: int = 21, customers: int = 120, events: int = 5000) -> list[tuple[str, bytes, Event]]:
    """(true customer id, raw bytes, validated event) of a seeded run, malformed records left out."""
    sim = SimConfig(seed=seed, customers=customers, end=END, max_events=events)
    validator = Validator.default()
    out = []
    for record in iter_records(sim):
        if record.topic != "clickstream" or record.truth is None:
            continue
        event = validator.clickstream(record.value, now=END.timestamp())
        if isinstance(event, Event):
            out.append((record.truth["customer_id"], record.value, event))
    return out


@pytest.fixture(scope="module")
def stream() -> list[tuple[str, bytes, Event]]:
    return simulated()


def run(items: list[tuple[str, bytes, Event]]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for offset, (customer, _, event) in enumerate(items):
        states[customer], _ = profile.apply(states.get(customer), event, offset)
    return states


def test_profile_counters_equal_an_independent_recount_of_the_raw_input(stream: list) -> None:  # type: ignore[type-arg]
    states = run(stream)
    # The independent recount: parse the raw bytes again, drop repeated event ids, count.
    seen: set[str] = set()
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    orders: Counter[str] = Counter()
    revenue: Counter[str] = Counter()
    devices: dict[str, Counter[str]] = defaultdict(Counter)
    stamps: dict[str, list[float]] = defaultdict(list)
    for customer, raw, _ in stream:
        doc = orjson.loads(raw)
        if doc["event_id"] in seen:
            continue
        seen.add(doc["event_id"])
        by_type[customer][doc["type"]] += 1
        stamps[customer].append(datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00")).timestamp())
        device = doc.get("context", {}).get("device", {}).get("type")
        if device:
            devices[customer][device] += 1
        if doc["type"] == "purchase":
            orders[customer] += 1
            revenue[customer] += round(doc["properties"]["revenue"] * 100)
    assert sum(orders.values()) > 20 and len(states) > 50  # the run exercises purchases and many profiles
    assert set(states) == set(by_type)
    for customer, state in states.items():
        assert state["counts"] == dict(by_type[customer])
        assert state["events"] == sum(by_type[customer].values())
        assert state["orders"] == orders[customer]
        assert state["revenue_cents"] == revenue[customer]
        assert state["devices"] == dict(devices[customer])
        assert (state["first_seen"], state["last_seen"]) == (min(stamps[customer]), max(stamps[customer]))


def test_simulated_retries_are_counted_once(stream: list) -> None:  # type: ignore[type-arg]
    ids = [e.event_id for _, _, e in stream]
    assert len(ids) > len(set(ids)), "the run should contain publisher retries"
    states = run(stream)
    assert sum(s["events"] for s in states.values()) == len(set(ids))


@given(st.integers(0, 300))
def test_replaying_any_suffix_of_the_input_changes_nothing(cut: int) -> None:
    items = _SMALL
    once = run(items)
    states = {k: dict(v) for k, v in once.items()}
    for offset, (customer, _, event) in enumerate(items):
        if offset < cut:
            continue
        states[customer], outcome = profile.apply(states[customer], event, offset)
        assert outcome == "replayed"
    assert states == once


_SMALL = simulated(seed=4, customers=20, events=300)


# ---------------------------------------------------------------- decay


def _purchase(eid: str, ts: float, revenue: float, category: str = "toys") -> Event:
    return ev(eid, ts, "purchase", order_id=eid, revenue=revenue, currency="GBP",
              items=[{"product_id": "p", "category": category, "price": revenue, "quantity": 1}])


def test_decayed_monetary_value_halves_every_half_life() -> None:
    state, _ = profile.apply(None, _purchase("o1", 0.0, 100.0), 0)
    half = features.HALF_LIFE["revenue"]
    vec = dict(zip(features.vector_names(), features.vector(state, half), strict=True))
    assert vec["revenue_decayed_log"] == pytest.approx(math.log1p(50.0))
    assert vec["orders_decayed"] == pytest.approx(0.5)
    later = dict(zip(features.vector_names(), features.vector(state, 2 * half), strict=True))
    assert later["orders_decayed"] == pytest.approx(0.25)


@given(st.permutations(list(range(8))))
def test_decayed_values_do_not_depend_on_event_order(order: list[int]) -> None:
    events = [_purchase(f"o{i}", i * 5 * 86400.0, 10.0 + i, ["toys", "books"][i % 2]) for i in range(8)]
    base, shuffled = None, None
    for offset, i in enumerate(range(8)):
        base, _ = profile.apply(base, events[i], offset)
    for offset, i in enumerate(order):
        shuffled, _ = profile.apply(shuffled, events[i], offset)
    assert base is not None and shuffled is not None
    now = 60 * 86400.0
    assert features.vector(shuffled, now) == pytest.approx(features.vector(base, now), rel=1e-9)


def test_landmark_is_moved_before_the_scale_can_overflow() -> None:
    state, _ = profile.apply(None, ev("a", 0.0), 0)
    far = 20 * 365 * 86400.0  # 20 years: ~520 half-lives of the 14-day activity decay
    state, _ = profile.apply(state, ev("b", far), 1)
    assert state["t0"] == far and math.isfinite(state["decayed"]["events"])
    vec = dict(zip(features.vector_names(), features.vector(state, far), strict=True))
    assert vec["activity_decayed_log"] == pytest.approx(math.log1p(1.0))


# ---------------------------------------------------------------- carts


def _cart(eid: str, ts: float, kind: str = "add_to_cart", qty: int = 1) -> Event:
    return ev(eid, ts, kind, product_id="p", category="toys", price=5.0, quantity=qty)


def _replay(events: list[Event], config: ProfileConfig = profile.DEFAULT_CONFIG) -> dict[str, Any]:
    state = None
    for offset, e in enumerate(events):
        state, _ = profile.apply(state, e, offset, config)
    assert state is not None
    return state


def test_cart_not_purchased_within_the_window_is_abandoned_once() -> None:
    state = _replay([_cart("a", 0.0), _cart("b", 10.0), ev("c", 23 * HOUR)])
    assert state["abandoned"] == 0 and state["cart"] == {"since": 10.0, "qty": 2}
    assert pending_abandonment(state, 24 * HOUR + 11) == 1 and pending_abandonment(state, 23 * HOUR) == 0
    state = _replay([_cart("a", 0.0), ev("c", 25 * HOUR), ev("d", 80 * HOUR)])
    assert state["abandoned"] == 1 and state["cart"] is None


def test_purchased_or_emptied_carts_are_not_abandoned() -> None:
    bought = _replay([_cart("a", 0.0), _purchase("o", 600.0, 5.0), ev("c", 48 * HOUR)])
    emptied = _replay([_cart("a", 0.0, qty=2), _cart("r", 60.0, "remove_from_cart", qty=2), ev("c", 48 * HOUR)])
    assert (bought["abandoned"], bought["cart"]) == (0, None)
    assert (emptied["abandoned"], emptied["cart"]) == (0, None)


def test_abandonment_window_is_configurable() -> None:
    state = _replay([_cart("a", 0.0), ev("c", 2 * HOUR)], ProfileConfig(abandon_after=HOUR))
    assert state["abandoned"] == 1


# ---------------------------------------------------------------- traits


def test_traits_keep_bands_and_places_only() -> None:
    identify = ev("i", END.timestamp(), "identify", traits={
        "email": "Jane.Doe@example.com", "first_name": "Jane", "last_name": "Doe", "phone": "+447700900123",
        "date_of_birth": "1988-07-15", "street": "1 High St", "postcode": "LS1 1AA", "city": "Leeds",
        "state": "West Yorkshire", "country": "GB"})
    state, _ = profile.apply(None, identify, 0)
    assert state["traits"] == {"age_band": "35-44", "city": "Leeds", "state": "West Yorkshire", "country": "GB"}
    blob = orjson.dumps(state).decode()
    for secret in ("Jane", "Doe", "example.com", "7700900123", "1988", "High St", "LS1"):
        assert secret not in blob


def test_crm_traits_are_last_writer_wins_and_idempotent() -> None:
    s = apply_traits(None, {"city": "York", "date_of_birth": "2001-01-01"}, ts=2000.0)
    s = apply_traits(s, {"city": "Hull"}, ts=1000.0)  # older record: ignored
    assert s["traits"]["city"] == "York"
    assert apply_traits(s, {"city": "York", "date_of_birth": "2001-01-01"}, ts=2000.0) == s


@pytest.mark.parametrize(("dob", "band"), [("2010-01-01", "under_18"), ("2005-02-29", None), ("2005-03-01", "18-24"),
                                           ("1994-03-02", "25-34"), ("1959-03-01", "65+"), ("2030-01-01", None)])
def test_age_bands(dob: str, band: str | None) -> None:
    assert age_band(dob, END.timestamp()) == band


# ---------------------------------------------------------------- hooks


def test_merging_two_profiles_equals_one_profile_with_all_their_events(stream: list) -> None:  # type: ignore[type-arg]
    hook = REGISTRY["profile"]
    customers = sorted({c for c, _, _ in stream})[:2]
    a_items = [x for x in stream if x[0] == customers[0]]
    b_items = [x for x in stream if x[0] == customers[1]]
    a, b = _replay([e for _, _, e in a_items]), _replay([e for _, _, e in b_items])
    both = _replay(sorted([e for _, _, e in a_items + b_items], key=lambda e: e.ts))
    merged = hook.merge(a, b)
    for key in ("events", "counts", "orders", "revenue_cents", "first_seen", "last_seen", "devices",
                "first_purchase", "last_purchase"):
        assert merged[key] == both[key], key
    now = END.timestamp()
    assert features.vector(merged, now) == pytest.approx(features.vector(both, now), rel=1e-9)


counter_states = st.builds(
    lambda n, o, r, t: {**profile.new_state(), "events": n, "orders": o, "revenue_cents": r,
                        "counts": {"page_view": n}, "first_seen": t, "last_seen": t + n},
    st.integers(0, 100), st.integers(0, 10), st.integers(0, 10**6), st.floats(0, 1e9))


@given(counter_states, counter_states, counter_states)
def test_merge_hook_is_associative_on_counters(x: dict, y: dict, z: dict) -> None:  # type: ignore[type-arg]
    hook = REGISTRY["profile"]
    left, right = hook.merge(hook.merge(x, y), z), hook.merge(x, hook.merge(y, z))
    for key in ("events", "orders", "revenue_cents", "counts", "first_seen", "last_seen"):
        assert left[key] == right[key]


def test_split_keeps_and_erase_deletes() -> None:
    hook = REGISTRY["profile"]
    table = {"p-1": _replay([ev("a", 1.0)])}
    apply_change(table, hook, {"change": "split", "profile_id": "p-1", "new_profile_ids": ["p-1", "p-2"]})
    assert list(table) == ["p-1"]
    apply_erasure(table, hook, "p-1")
    assert table == {}


def test_states_survive_the_changelogs_json_and_stay_bounded(stream: list) -> None:  # type: ignore[type-arg]
    from app.sessions import state as sessions

    profiles = run(stream)
    session_states: dict[str, Any] = {}
    for offset, (customer, _, event) in enumerate(stream):
        session_states[customer], _, _ = sessions.apply(session_states.get(customer), event, offset)
    for state in [*profiles.values(), *session_states.values()]:
        assert orjson.loads(orjson.dumps(state)) == state
        assert len(list(dedupe.ids(state["recent_ids"]))) <= 64
    assert all(len(s["affinity"]) <= ProfileConfig().max_categories for s in profiles.values())
    assert all(len(s["open"]) <= 3 for s in session_states.values())
    busiest = max(profiles.values(), key=lambda s: s["events"])
    assert busiest["events"] > 64 and len(orjson.dumps(busiest)) < 6000


def test_serving_view_names_every_feature_and_holds_no_event_ids() -> None:
    state = _replay([_cart("a", 0.0), _purchase("o", 60.0, 12.5)])
    view = profile.serving(state, 3600.0)
    assert list(view["features"]) == list(features.vector_names())
    assert view["orders"] == 1 and view["revenue"] == 12.5 and view["events"] == 2
    blob = orjson.dumps(view).decode()
    assert '"a"' not in blob and "recent_ids" not in blob and "minute_n" not in blob
