"""The unified profile per ``profile_id``: lifetime counts, RFM with decay, affinities, traits, quality.

Pure functions; the Faust table lives in the shell. Every feature read from
this state is defined in :mod:`app.profiles.features` (one table of name, meaning,
update rule and half-life); :func:`app.profiles.features.vector` derives the numeric
vector for clustering.

What the state holds (plain JSON)::

    {"offset": int, "recent_ids": str,            # exactness, as in app.ingest.activity (packed digests)
     "events": int, "counts": {type: int},        # lifetime
     "first_seen": ts, "last_seen": ts,
     "orders": int, "revenue_cents": int, "first_purchase": ts, "last_purchase": ts,
     "t0": ts,                                    # landmark of the decayed values
     "decayed": {"orders", "revenue", "events", "email": float},
     "affinity": {category: float},               # decayed, at most max_categories
     "devices": {device_type: int},
     "cart": None | {"since": ts, "qty": int}, "abandoned": int,
     "traits": {"age_band", "city", "state", "country"}, "traits_ts": ts,
     "quality": {"monetary_outliers", "rate_outliers", "bot_minutes": int, "bot": bool,
                 "minute": int | None, "minute_n": int}}

Cart abandonment, defined: a cart opens with an ``add_to_cart`` and holds the net
quantity added minus removed. A ``purchase`` converts it (closed, not abandoned);
removing everything empties it (closed, not abandoned). When an event of the
profile arrives more than ``abandon_after`` (24 h) after the cart's last change
and it still holds items, the cart counts as abandoned and closes.
:func:`pending_abandonment` says whether an open cart is already past that
deadline at a read time ``now`` (the feature vector counts it), without changing
the state.

Traits are kept only as bands and coarse places: an age band computed from the
date of birth at the time of the record, city, state and country. Names, e-mail,
phone, street, postcode and the date of birth itself are never stored here.

Examples
--------
>>> from app.sessions.state import ev
>>> s = None
>>> s, out = apply(s, ev("e1", 0.0, "product_view", product_id="p", category="toys", price=5.0), 1)
>>> s, out = apply(s, ev("e2", 60.0, "add_to_cart", product_id="p", category="toys", price=5.0, quantity=1), 2)
>>> s, out = apply(s, ev("e3", 90.0, "purchase", order_id="o", revenue=5.0, currency="GBP",
...                      items=[{"product_id": "p", "category": "toys", "price": 5.0, "quantity": 1}]), 3)
>>> s["events"], s["orders"], s["revenue_cents"], s["cart"], s["abandoned"], out
(3, 1, 500, None, 0, 'applied')
>>> apply(s, ev("e3", 90.0, "purchase"), 3)[1]
'replayed'
>>> s = apply_traits(s, {"date_of_birth": "1990-06-01", "city": "Leeds", "email": "x@y.z"}, ts=1.7e9)
>>> s["traits"]
{'age_band': '25-34', 'city': 'Leeds'}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from app.events import dedupe
from app.events.validation import Event
from app.profiles.features import (
    ABANDON_AFTER,
    AFFINITY_WEIGHT,
    HALF_LIFE,
    MAX_HALF_LIVES,
    rescale,
    vector,
    vector_names,
    weight,
)
from app.profiles.quality import DEFAULT_QUALITY, QualityConfig, QualityMonitor
from tables.hooks import KeepOnSplit, State, register

Outcome = Literal["applied", "replayed", "duplicate_event_id"]

AGE_BANDS: Final = ((18, "under_18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (55, "45-54"), (65, "55-64"))
TRAIT_KEYS: Final = ("city", "state", "country")
_H_EVENTS: Final = HALF_LIFE["events"]
_H_ORDERS: Final = HALF_LIFE["orders"]
_H_EMAIL: Final = HALF_LIFE["email"]
_H_AFFINITY: Final = HALF_LIFE["affinity"]


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """``abandon_after`` in seconds; ``max_categories`` bounds the affinity map."""

    abandon_after: float = ABANDON_AFTER
    max_categories: int = 24
    dedup_window: int = 64
    quality: QualityConfig = field(default_factory=lambda: DEFAULT_QUALITY)


DEFAULT_CONFIG: Final = ProfileConfig()


def new_state() -> State:
    return {
        "offset": -1, "recent_ids": "", "events": 0, "counts": {}, "first_seen": None, "last_seen": None,
        "orders": 0, "revenue_cents": 0, "first_purchase": None, "last_purchase": None,
        "t0": None, "decayed": {"orders": 0.0, "revenue": 0.0, "events": 0.0, "email": 0.0},
        "affinity": {}, "devices": {}, "cart": None, "abandoned": 0,
        "traits": {}, "traits_ts": None,
        "quality": {"monetary_outliers": 0, "rate_outliers": 0, "bot_minutes": 0, "bot": False,
                    "minute": None, "minute_n": 0},
    }


def _cents(value: Any) -> int:
    return round(value * 100) if isinstance(value, int | float) and math.isfinite(value) else 0


def apply(
    state: State | None,
    event: Event,
    offset: int,
    config: ProfileConfig = DEFAULT_CONFIG,
    monitor: QualityMonitor | None = None,
) -> tuple[State, Outcome]:
    """Fold one event into a profile; ``state`` is not modified.

    ``monitor`` (optional) scores revenue and per-minute rates against the
    population; its flags are counted in ``quality``. Replays and retries never
    reach it.
    """
    cur = state if state is not None else new_state()
    if offset <= cur["offset"]:
        return cur, "replayed"
    duplicate, new = dedupe.admit(cur, event.event_id, config.dedup_window)
    new["offset"] = offset
    if duplicate:
        return new, "duplicate_event_id"
    ts = event.ts
    kind = event.type
    data = event.data
    new["events"] = cur["events"] + 1
    counts = dict(cur["counts"])
    counts[kind] = counts.get(kind, 0) + 1
    new["counts"] = counts
    first, last = cur["first_seen"], cur["last_seen"]
    new["first_seen"] = ts if first is None or ts < first else first
    new["last_seen"] = ts if last is None or ts > last else last

    # Decayed values, against the landmark t0 (app/profiles/features.py).
    t0 = cur["t0"]
    decayed = dict(cur["decayed"])
    affinity = cur["affinity"]
    if t0 is None:
        t0 = ts
    elif ts - t0 > MAX_HALF_LIVES * _H_EVENTS:
        decayed = {k: rescale(v, t0, ts, HALF_LIFE[k]) for k, v in decayed.items()}
        affinity = {k: rescale(v, t0, ts, _H_AFFINITY) for k, v in affinity.items()}
        t0 = ts
    new["t0"] = t0
    decayed["events"] += 2.0 ** ((ts - t0) / _H_EVENTS)  # features.weight, inlined

    context = data.get("context")
    if context:
        device = context.get("device")
        device_type = device.get("type") if isinstance(device, dict) else None
        if isinstance(device_type, str):
            devices = dict(cur["devices"])
            devices[device_type] = devices.get(device_type, 0) + 1
            new["devices"] = devices

    props = data.get("properties") or {}
    cart = cur["cart"]
    if cart is not None and ts > cart["since"] + config.abandon_after:
        new["abandoned"] = cur["abandoned"] + 1
        cart = None
    if kind == "product_view" or kind == "add_to_cart":
        category = props.get("category")
        if isinstance(category, str):
            affinity = _add_affinity(affinity, category, AFFINITY_WEIGHT[kind] * weight(ts, t0, _H_AFFINITY),
                                     config.max_categories)
        if kind == "add_to_cart":
            qty = props.get("quantity", 1)
            qty = qty if isinstance(qty, int) else 1
            cart = {"since": ts, "qty": qty} if cart is None else {
                "since": max(ts, cart["since"]), "qty": cart["qty"] + qty}
    elif kind == "remove_from_cart":
        if cart is not None:
            qty = props.get("quantity", 1)
            left = cart["qty"] - (qty if isinstance(qty, int) else 1)
            cart = {"since": max(ts, cart["since"]), "qty": left} if left > 0 else None
    elif kind == "purchase":
        cart = None
        cents = _cents(props.get("revenue"))
        new["orders"] = cur["orders"] + 1
        new["revenue_cents"] = cur["revenue_cents"] + cents
        fp, lp = cur["first_purchase"], cur["last_purchase"]
        new["first_purchase"] = ts if fp is None or ts < fp else fp
        new["last_purchase"] = ts if lp is None or ts > lp else lp
        w = weight(ts, t0, _H_ORDERS)
        decayed["orders"] += w
        decayed["revenue"] += cents / 100 * w
        items = props.get("items")
        if isinstance(items, list):
            wa = AFFINITY_WEIGHT["purchase"] * weight(ts, t0, _H_AFFINITY)
            for item in items:
                category = item.get("category") if isinstance(item, dict) else None
                if isinstance(category, str):
                    affinity = _add_affinity(affinity, category, wa, config.max_categories)
        if monitor is not None and monitor.revenue_outlier(cents / 100):
            new["quality"] = {**new["quality"], "monetary_outliers": cur["quality"]["monetary_outliers"] + 1}
    elif kind == "email_open":
        decayed["email"] += weight(ts, t0, _H_EMAIL)
    elif kind == "identify":
        traits = props.get("traits")
        if isinstance(traits, dict):
            new.update(_traits_update(new, trait_bands(traits, ts), ts))
    new["cart"] = cart
    new["decayed"] = decayed
    new["affinity"] = affinity
    new["quality"] = _rate(new["quality"], ts, config.quality, monitor)
    return new, "applied"


def _add_affinity(affinity: dict[str, float], category: str, amount: float, bound: int) -> dict[str, float]:
    out = dict(affinity)
    out[category] = out.get(category, 0.0) + amount
    if len(out) > bound:
        del out[min(out, key=lambda k: (out[k], k))]
    return out


def _rate(q: dict[str, Any], ts: float, config: QualityConfig, monitor: QualityMonitor | None) -> dict[str, Any]:
    """Per-minute event count of the profile; bot marking and rate scoring (app/profiles/quality.py)."""
    minute = int(ts // 60)
    current = q["minute"]
    if current is not None and minute < current:
        return q  # a late event: its minute has been scored already
    if minute == current:
        n = q["minute_n"] + 1
        if n == config.bot_events_per_minute:
            if monitor is not None:
                monitor.bot_minute(first_for_profile=not q["bot"])
            return {**q, "minute_n": n, "bot": True, "bot_minutes": q["bot_minutes"] + 1}
        return {**q, "minute_n": n}
    out = {**q, "minute": minute, "minute_n": 1}
    if current is not None and monitor is not None and monitor.rate_outlier(q["minute_n"]):
        out["rate_outliers"] = q["rate_outliers"] + 1
    return out


def age_band(date_of_birth: str, at: float) -> str | None:
    """The age band of a ``YYYY-MM-DD`` birth date at time ``at``; ``None`` when unreadable.

    >>> age_band("2000-03-02", datetime(2024, 3, 1, tzinfo=UTC).timestamp()), age_band("1950-01-01", 1.7e9)
    ('18-24', '65+')
    """
    try:
        born = datetime.strptime(date_of_birth, "%Y-%m-%d")
    except (TypeError, ValueError):
        return None
    today = datetime.fromtimestamp(at, UTC)
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age < 0:
        return None
    for limit, band in AGE_BANDS:
        if age < limit:
            return band
    return "65+"


def trait_bands(traits: Mapping[str, Any], at: float) -> dict[str, str]:
    """The non-identifying part of raw traits known at ``at``: age band, city, state, country.

    Computed at the edge (ingest) so that no date of birth, name or contact detail
    travels further; :func:`apply_bands` folds the result into a profile.

    >>> trait_bands({"date_of_birth": "1990-06-01", "city": " Leeds ", "email": "x@y.z", "state": ""}, at=1.7e9)
    {'age_band': '25-34', 'city': 'Leeds'}
    """
    kept: dict[str, str] = {}
    dob = traits.get("date_of_birth")
    if isinstance(dob, str):
        band = age_band(dob, at)
        if band is not None:
            kept["age_band"] = band
    for key in TRAIT_KEYS:
        value = traits.get(key)
        if isinstance(value, str) and value.strip():
            kept[key] = value.strip()
    return kept


def _traits_update(state: State, bands: Mapping[str, str], ts: float) -> dict[str, Any]:
    """The ``traits`` / ``traits_ts`` of ``state`` after a newer record; older records change nothing."""
    seen = state["traits_ts"]
    if seen is not None and ts < seen:
        return {}
    return {"traits": {**state["traits"], **bands}, "traits_ts": ts}


def apply_traits(state: State | None, traits: Mapping[str, Any], ts: float) -> State:
    """Fold CRM/POS traits (``crm-profiles`` ``traits``) known at ``ts`` into a profile.

    Idempotent (a replay sets the same values) and last-writer-wins by ``ts``,
    so it needs no offset. Only the age band, city, state and country are kept.
    """
    return apply_bands(state, trait_bands(traits, ts), ts)


def apply_bands(state: State | None, bands: Mapping[str, Any], ts: float) -> State:
    """Fold traits already reduced by :func:`trait_bands` (the record the identity stage forwards).

    Only the keys :func:`trait_bands` produces are taken, whatever else ``bands`` holds.

    >>> apply_bands(None, {"age_band": "25-34", "city": "Leeds", "email": "x@y.z"}, ts=5.0)["traits"]
    {'age_band': '25-34', 'city': 'Leeds'}
    >>> apply_bands(apply_bands(None, {"city": "Leeds"}, ts=5.0), {"city": "York"}, ts=4.0)["traits"]
    {'city': 'Leeds'}
    """
    cur = state if state is not None else new_state()
    clean = {k: v for k, v in bands.items() if k in ("age_band", *TRAIT_KEYS) and isinstance(v, str) and v}
    update = _traits_update(cur, clean, ts)
    return {**cur, **update} if update else cur


def pending_abandonment(state: State, now: float, config: ProfileConfig = DEFAULT_CONFIG) -> int:
    """1 if the profile's open cart is past the abandonment deadline at ``now``, else 0."""
    cart = state["cart"]
    return 1 if cart is not None and now > cart["since"] + config.abandon_after else 0


def feature_vector(state: State, now: float, config: ProfileConfig = DEFAULT_CONFIG) -> dict[str, float]:
    """The named feature vector at ``now`` (:func:`app.profiles.features.vector`): served, and clustered."""
    return dict(zip(vector_names(), vector(state, now, abandon_after=config.abandon_after), strict=True))


def serving(state: State, now: float, config: ProfileConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """What Redis may hold for a profile: named features, traits and quality flags (no ids)."""
    return {
        "features": feature_vector(state, now, config),
        "traits": dict(state["traits"]),
        "quality": {k: v for k, v in state["quality"].items() if k not in ("minute", "minute_n")},
        "events": state["events"],
        "orders": state["orders"],
        "revenue": state["revenue_cents"] / 100,
        "first_seen": state["first_seen"],
        "last_seen": state["last_seen"],
    }


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _sum_maps(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


class ProfileHooks(KeepOnSplit[State]):
    """Identity changes for the profile table.

    ``merge``: lifetime counters, orders, revenue, devices, abandonments and
    quality counters add up (associative and exact: integers); first/last times
    take the min/max; decayed values are rescaled to the survivor's landmark and
    added; affinities add up per category (then the smallest beyond
    ``max_categories`` are dropped); the open carts combine (quantities add, the
    later change time); traits are those of the later record; ``bot`` if either
    was. Offset and recent ids stay the survivor's. ``split``: the state stays with
    the part that keeps the id (:class:`~tables.hooks.KeepOnSplit`); events are not
    attributed per part. ``erase``: deletes the state.
    """

    def __init__(self, config: ProfileConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    def merge(self, surviving: State, absorbed: State) -> State:
        t0, t1 = surviving["t0"], absorbed["t0"]
        if t0 is None:
            t0 = t1
        decayed = dict(surviving["decayed"])
        affinity = dict(surviving["affinity"])
        if t1 is not None and t0 is not None:
            for k, v in absorbed["decayed"].items():
                decayed[k] = decayed.get(k, 0.0) + rescale(v, t1, t0, HALF_LIFE[k])
            for k, v in absorbed["affinity"].items():
                affinity[k] = affinity.get(k, 0.0) + rescale(v, t1, t0, _H_AFFINITY)
            while len(affinity) > self.config.max_categories:
                del affinity[min(affinity, key=lambda k: (affinity[k], k))]
        a_cart, b_cart = surviving["cart"], absorbed["cart"]
        cart = a_cart or b_cart
        if a_cart is not None and b_cart is not None:
            cart = {"since": max(a_cart["since"], b_cart["since"]), "qty": a_cart["qty"] + b_cart["qty"]}
        a_ts, b_ts = surviving["traits_ts"], absorbed["traits_ts"]
        traits_from = absorbed if b_ts is not None and (a_ts is None or b_ts > a_ts) else surviving
        qa, qb = surviving["quality"], absorbed["quality"]
        return {
            **surviving,
            "events": surviving["events"] + absorbed["events"],
            "counts": _sum_maps(surviving["counts"], absorbed["counts"]),
            "first_seen": _min(surviving["first_seen"], absorbed["first_seen"]),
            "last_seen": _max(surviving["last_seen"], absorbed["last_seen"]),
            "orders": surviving["orders"] + absorbed["orders"],
            "revenue_cents": surviving["revenue_cents"] + absorbed["revenue_cents"],
            "first_purchase": _min(surviving["first_purchase"], absorbed["first_purchase"]),
            "last_purchase": _max(surviving["last_purchase"], absorbed["last_purchase"]),
            "t0": t0, "decayed": decayed, "affinity": affinity,
            "devices": _sum_maps(surviving["devices"], absorbed["devices"]),
            "cart": cart,
            "abandoned": surviving["abandoned"] + absorbed["abandoned"],
            "traits": dict(traits_from["traits"]), "traits_ts": traits_from["traits_ts"],
            "quality": {
                **qa,
                "monetary_outliers": qa["monetary_outliers"] + qb["monetary_outliers"],
                "rate_outliers": qa["rate_outliers"] + qb["rate_outliers"],
                "bot_minutes": qa["bot_minutes"] + qb["bot_minutes"],
                "bot": qa["bot"] or qb["bot"],
            },
        }

    def erase(self, state: State) -> State | None:
        return None


HOOKS = register("profile", ProfileHooks())
