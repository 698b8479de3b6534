"""The registry of profile feature names that segment rules may use.

Rules name profile features (``monetary``, ``affinity.fashion`` …) whose values
come from the profile feature core. The rule loader checks every name against a
:class:`FeatureRegistry`, so a typo is a load error naming the rule, not a rule
that silently never fires. Each name has a kind:

``number``
    An int or float (``frequency``, ``monetary``, ``lifetime.purchases``).
``string``
    Compared with ``==`` / ``!=`` only (``country``).
``timestamp``
    Epoch seconds (UTC); usable in comparisons and in ``age(name)``, the seconds
    since that time, which is how rules express "no purchase for 60 days" in a
    way a timer can re-evaluate without a new event.

A name ending in ``.*`` is a family: ``affinity.*`` accepts ``affinity.books``.

:data:`DEFAULT_FEATURES` is what the default rules use; the profile core is to
confirm or extend it (``DEFAULT_FEATURES.register(...)``) when it lands.

Examples
--------
>>> DEFAULT_FEATURES.kind("affinity.books"), DEFAULT_FEATURES.kind("monetary")
('number', 'number')
>>> DEFAULT_FEATURES.kind("last_purchase_at"), DEFAULT_FEATURES.kind("nope") is None
('timestamp', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["number", "string", "timestamp"]
KINDS: tuple[Kind, ...] = ("number", "string", "timestamp")

#: Event types of ``clickstream.v1`` (what ``count(...)`` and ``age(...)`` accept).
EVENT_TYPES: frozenset[str] = frozenset({
    "page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "checkout_start",
    "purchase", "identify", "email_open", "email_click", "recommendation_click", "consent",
})


@dataclass
class FeatureRegistry:
    """Known feature names with their kind and meaning.

    Parameters
    ----------
    features
        Exact name -> (kind, description).
    families
        Prefix (without ``.*``) -> (kind, description), for names like ``affinity.<category>``.
    """

    features: dict[str, tuple[Kind, str]] = field(default_factory=dict)
    families: dict[str, tuple[Kind, str]] = field(default_factory=dict)

    def register(self, name: str, kind: Kind, description: str) -> None:
        """Add or redefine a name; ``prefix.*`` registers a family."""
        if kind not in KINDS:
            raise ValueError(f"feature kind must be one of {KINDS}, got {kind!r}")
        if name.endswith(".*"):
            self.families[name[:-2]] = (kind, description)
        else:
            self.features[name] = (kind, description)

    def kind(self, name: str) -> Kind | None:
        """The kind of ``name``, or ``None`` when it is not known."""
        if name in self.features:
            return self.features[name][0]
        prefix, dot, rest = name.rpartition(".")
        while dot:
            if prefix in self.families and rest:
                return self.families[prefix][0]
            prefix, dot, _ = prefix.rpartition(".")
        return None

    def describe(self) -> list[tuple[str, Kind, str]]:
        """Every name (families as ``prefix.*``) with kind and description, sorted."""
        rows = [(n, k, d) for n, (k, d) in self.features.items()]
        rows += [(f"{p}.*", k, d) for p, (k, d) in self.families.items()]
        return sorted(rows)


def default_registry() -> FeatureRegistry:
    """A fresh registry holding the names the default rules are written against."""
    r = FeatureRegistry()
    r.register("recency_days", "number", "days since the last purchase at the last profile update (RFM R)")
    r.register("frequency", "number", "purchases in the last 90 days (RFM F)")
    r.register("monetary", "number", "purchase revenue in the last 90 days, in the shop currency (RFM M)")
    r.register("lifetime.purchases", "number", "purchases over the profile's whole history, CRM included")
    r.register("lifetime.revenue", "number", "purchase revenue over the profile's whole history")
    r.register("first_seen", "timestamp", "time of the profile's first known event or CRM record")
    r.register("last_seen", "timestamp", "time of the profile's newest event")
    r.register("last_purchase_at", "timestamp", "time of the profile's newest purchase (absent if none)")
    r.register("affinity.*", "number", "share of the profile's category interactions in <category>, in [0, 1]")
    r.register("country", "string", "ISO 3166-1 alpha-2 country of the profile, when known")
    return r


#: The registry the default rules are validated against (the lead fills it from the profile core).
DEFAULT_FEATURES = default_registry()
