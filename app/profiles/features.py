"""Profile features: every definition in one place, and the numeric vector used for clustering.

:data:`FEATURES` is the single list of features: name, meaning, how the profile
state (:mod:`app.profiles.unified`) updates it per event, and its decay half-life.
:func:`vector` reads them from a profile state at a time ``now``, in the stable
order of :func:`vector_names`; category affinities follow, one per category of
the list passed in (default :data:`CATEGORIES`, the catalogue's).

Exponential decay is kept without touching every decayed value on each event:
a value is stored scaled to the profile's landmark time ``t0``
(``stored = sum(x_i * 2 ** ((t_i - t0) / h))``) and read as
``stored * 2 ** (-(now - t0) / h)`` (:func:`weight`, :func:`read`). An update
is one addition, the result does not depend on the order of events, and merging
two profiles is a sum once both are scaled to one landmark (:func:`rescale`).

The table of all features is ``docs/features.md``, generated from :data:`FEATURES`
(``.venv/bin/python -m app.profiles.features > docs/features.md``; a unit test checks they agree):

>>> [f.name for f in FEATURES][:3]
['recency_days', 'purchase_recency_days', 'orders_decayed']
>>> vector_names(("toys",))[-3:]
('lifetime_events_log', 'quality_bot', 'affinity:toys')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

DAY: Final = 86400.0
RECENCY_CAP_DAYS: Final = 365.0

#: The catalogue's categories (app/simulator/catalog.py); the default affinity columns.
CATEGORIES: Final = ("electronics", "fashion", "beauty", "home", "grocery", "toys", "sports", "books",
                     "garden", "jewellery", "pets", "health")

#: Half-lives (seconds) of the decayed quantities held in a profile's ``decayed`` / ``affinity``.
HALF_LIFE: Final = {"orders": 90 * DAY, "revenue": 90 * DAY, "events": 14 * DAY, "email": 30 * DAY,
                    "affinity": 30 * DAY}

#: Affinity added per event type (per purchased line for ``purchase``).
AFFINITY_WEIGHT: Final = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}

#: A cart with items and no purchase this long after its last change is abandoned (seconds).
ABANDON_AFTER: Final = 24 * 3600.0

#: Rescale decayed values to a new landmark when ``ts - t0`` exceeds this many half-lives.
MAX_HALF_LIVES: Final = 400.0


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    meaning: str
    update: str
    half_life_days: float | None = None


FEATURES: Final[tuple[Feature, ...]] = (
    Feature("recency_days", "days since the last event",
            "last_seen = max(last_seen, ts); read as (now - last_seen) / 1 d, capped at 365"),
    Feature("purchase_recency_days", "days since the last purchase (365 if none)",
            "last_purchase = max(last_purchase, ts) on purchase; capped at 365"),
    Feature("orders_decayed", "recent purchase frequency (RFM F)", "+= 1 per purchase, decayed", 90),
    Feature("revenue_decayed_log", "recent spend (RFM M), log1p of the decayed revenue",
            "+= revenue per purchase, decayed", 90),
    Feature("activity_decayed_log", "recent engagement, log1p of the decayed event count",
            "+= 1 per event, decayed", 14),
    Feature("aov", "average order value over the lifetime",
            "lifetime revenue / lifetime orders (0 without orders)"),
    Feature("purchase_frequency_30d", "orders per 30 days of tenure",
            "lifetime orders / max(1, days from first seen to now) * 30"),
    Feature("email_opens_decayed", "recent e-mail opens", "+= 1 per email_open, decayed", 30),
    Feature("email_click_to_open", "e-mail clicks per open over the lifetime (sends are not in the stream)",
            "email_click count / max(1, email_open count), capped at 1"),
    Feature("cart_abandonments", "carts abandoned over the lifetime",
            "+= 1 when a cart with items sees no purchase within abandon_after (24 h) of its last change"),
    Feature("cart_abandon_rate", "share of carts abandoned", "abandonments / (abandonments + orders)"),
    Feature("device_mobile", "share of events from mobile devices",
            "devices[type] += 1 per event with a device type"),
    Feature("device_desktop", "share of events from desktop devices", "as device_mobile"),
    Feature("device_tablet", "share of events from tablets", "as device_mobile"),
    Feature("lifetime_events_log", "log1p of the lifetime event count", "+= 1 per event"),
    Feature("quality_bot", "1 if the profile ever had a bot-like event rate",
            "set when a minute holds bot_events_per_minute events (app/profiles/quality.py)"),
    Feature("affinity:<category>", "share of the decayed category interest",
            "+= 1 product_view, 3 add_to_cart, 5 per purchased line, decayed; read as share of the total", 30),
)


def markdown_table() -> str:
    """The feature table in Markdown (what ``docs/features.md`` holds)."""
    rows = ["| name | meaning | update rule | half-life (days) |", "|---|---|---|---|"]
    for f in FEATURES:
        half = "-" if f.half_life_days is None else f"{f.half_life_days:g}"
        rows.append(f"| {f.name} | {f.meaning} | {f.update} | {half} |")
    return "\n".join(rows)


_SCALAR_NAMES: Final = tuple(f.name for f in FEATURES if not f.name.startswith("affinity:"))


def vector_names(categories: tuple[str, ...] = CATEGORIES) -> tuple[str, ...]:
    """Names of :func:`vector`'s entries, in order."""
    return (*_SCALAR_NAMES, *(f"affinity:{c}" for c in categories))


def weight(ts: float, t0: float, half_life: float) -> float:
    """Scale of an amount added at ``ts`` relative to landmark ``t0``: ``2 ** ((ts - t0) / h)``."""
    return 2.0 ** ((ts - t0) / half_life)


def read(stored: float, now: float, t0: float, half_life: float) -> float:
    """The decayed value at ``now`` of a value stored against landmark ``t0``.

    >>> stored = 10 * weight(0.0, 0.0, 86400.0)   # 10 added at t0
    >>> read(stored, 86400.0, 0.0, 86400.0)        # one half-life later
    5.0
    """
    return stored * 2.0 ** (-(now - t0) / half_life)


def rescale(stored: float, old_t0: float, new_t0: float, half_life: float) -> float:
    """``stored`` against ``old_t0`` expressed against ``new_t0``."""
    return stored * 2.0 ** ((old_t0 - new_t0) / half_life)


def vector(state: dict[str, Any], now: float, categories: tuple[str, ...] = CATEGORIES,
           abandon_after: float = ABANDON_AFTER) -> list[float]:
    """The numeric features of a profile state at ``now`` (see :func:`vector_names`).

    An open cart already past ``abandon_after`` at ``now`` counts as abandoned
    (as :func:`app.profiles.unified.pending_abandonment`); pass the profile's setting.
    """
    last_seen = state["last_seen"]
    last_purchase = state["last_purchase"]
    first_seen = state["first_seen"]
    t0 = state["t0"] if state["t0"] is not None else now
    decayed = state["decayed"]
    orders = state["orders"]
    revenue = state["revenue_cents"] / 100
    counts = state["counts"]
    cart = state["cart"]
    abandoned = state["abandoned"] + (1 if cart is not None and now > cart["since"] + abandon_after else 0)
    devices = state["devices"]
    n_devices = sum(devices.values()) or 1
    tenure_days = max(1.0, (now - first_seen) / DAY) if first_seen is not None else 1.0
    affinity = state["affinity"]
    total_affinity = sum(affinity.values())
    opens = counts.get("email_open", 0)
    row = [
        min(RECENCY_CAP_DAYS, max(0.0, (now - last_seen) / DAY)) if last_seen is not None else RECENCY_CAP_DAYS,
        min(RECENCY_CAP_DAYS, max(0.0, (now - last_purchase) / DAY)) if last_purchase is not None
        else RECENCY_CAP_DAYS,
        read(decayed["orders"], now, t0, HALF_LIFE["orders"]),
        math.log1p(read(decayed["revenue"], now, t0, HALF_LIFE["revenue"])),
        math.log1p(read(decayed["events"], now, t0, HALF_LIFE["events"])),
        revenue / orders if orders else 0.0,
        orders / tenure_days * 30.0,
        read(decayed["email"], now, t0, HALF_LIFE["email"]),
        min(1.0, counts.get("email_click", 0) / max(1, opens)),
        float(abandoned),
        abandoned / (abandoned + orders) if abandoned + orders else 0.0,
        devices.get("mobile", 0) / n_devices,
        devices.get("desktop", 0) / n_devices,
        devices.get("tablet", 0) / n_devices,
        math.log1p(state["events"]),
        1.0 if state["quality"]["bot"] else 0.0,
    ]
    # Shares do not depend on now (one half-life for all categories), so no read() is needed.
    row.extend(affinity.get(c, 0.0) / total_affinity if total_affinity else 0.0 for c in categories)
    return row


def document() -> str:
    """The whole of ``docs/features.md``."""
    return (
        "# Profile features\n\n"
        "Generated from `app/profiles/features.py` (`FEATURES`) by "
        "`.venv/bin/python -m app.profiles.features > docs/features.md`; do not edit by hand.\n"
        "The clustering vector (`app.profiles.features.vector`) has these features in this order, "
        "the affinity columns last, one per category.\n"
        "Decayed values halve every half-life: an amount added at `t` weighs `2 ** (-(now - t) / half_life)` "
        "at `now`.\n\n" + markdown_table() + "\n"
    )


if __name__ == "__main__":
    print(document(), end="")


def rule_features(state: dict[str, Any], now: float) -> dict[str, Any]:
    """The features segment rules read (names of :data:`app.segments.known_features.DEFAULT_FEATURES`).

    ``frequency`` and ``monetary`` are the decayed order count and revenue (half-life 90
    days), the streaming form of "in the last 90 days"; a timestamp feature with no value is
    left out, so a rule on it is false.

    >>> from app.profiles.unified import new_state
    >>> f = rule_features({**new_state(), "orders": 2, "revenue_cents": 12000, "first_seen": 5.0,
    ...                    "affinity": {"toys": 3.0, "books": 1.0}}, now=10.0)
    >>> f["lifetime.purchases"], f["lifetime.revenue"], f["affinity.toys"], "last_purchase_at" in f
    (2, 120.0, 0.75, False)
    """
    t0 = state["t0"] if state["t0"] is not None else now
    decayed = state["decayed"]
    last_purchase = state["last_purchase"]
    affinity = state["affinity"]
    total_affinity = sum(affinity.values())
    features: dict[str, Any] = {
        "recency_days": (now - last_purchase) / DAY if last_purchase is not None else RECENCY_CAP_DAYS,
        "frequency": read(decayed["orders"], now, t0, HALF_LIFE["orders"]),
        "monetary": read(decayed["revenue"], now, t0, HALF_LIFE["revenue"]),
        "lifetime.purchases": state["orders"],
        "lifetime.revenue": state["revenue_cents"] / 100,
        **{f"affinity.{c}": v / total_affinity for c, v in affinity.items() if total_affinity},
    }
    for name, value in (("first_seen", state["first_seen"]), ("last_seen", state["last_seen"]),
                        ("last_purchase_at", last_purchase), ("country", state["traits"].get("country"))):
        if value is not None:
            features[name] = value
    return features
