"""Resolver configuration: limits against over-merging, link modes, blocking caps, junk values.

Kept apart from the match weights (:mod:`app.identity.model`): these are
policy, the weights are estimated from data. Both are JSON.

Examples
--------
>>> c = ResolverConfig.from_dict({"limits": {"email": 2}, "default_region": "AU"})
>>> c.limit("email"), c.limit("user_id"), c.limit("crm_record_id"), c.default_region
(2, 1, None, 'AU')
>>> ResolverConfig.from_dict({"link_modes": {"email": "sometimes"}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
app.errors.ConfigError: identity config: link mode of 'email' must be one of ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.identity.blocklist import Blocklist

#: How an exact match of an identifier type links profiles.
#: ``deterministic``: at once. ``unless_contradicted``: at once unless the other
#: fields of the two records weigh below ``contradiction_weight``.
#: ``probabilistic``: never on its own; it is only a blocking key and a field of the score.
LINK_MODES = ("deterministic", "probabilistic", "unless_contradicted")

DEFAULT_LIMITS: dict[str, int] = {
    "user_id": 1,
    "email": 5,
    "phone": 5,
    "loyalty_id": 10,
    "device_id": 20,
    "anonymous_id": 200,
}
DEFAULT_LINK_MODES: dict[str, str] = {
    "user_id": "deterministic",
    "crm_record_id": "deterministic",
    "email": "deterministic",
    "phone": "deterministic",
    "loyalty_id": "unless_contradicted",
    "device_id": "deterministic",
    "anonymous_id": "deterministic",
}


@dataclass(frozen=True)
class ResolverConfig:
    """Policy of the resolver.

    Parameters
    ----------
    default_region
        Region for phone numbers written without ``+country`` (a record's ``country`` wins).
    limits
        Most identifiers of a type one profile may hold; a merge past a limit is refused.
    link_modes
        :data:`LINK_MODES` per identifier type.
    contradiction_weight
        For ``unless_contradicted`` types: the sum of the *other* fields' weights
        (bits, prior excluded) below which an exact identifier match does not link.
    shared_types
        Identifier types that stop linking once seen with more than
        ``max_users_per_device`` distinct user ids (shared devices, shared browsers).
    max_users_per_device
        See ``shared_types``.
    block_cap
        A blocking key holding this many members is treated as uninformative:
        it is no longer extended nor used for candidates.
    max_candidates
        Most candidate members compared for one observation.
    blocklist
        Junk values (see :mod:`app.identity.blocklist`).
    """

    default_region: str = "GB"
    limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    link_modes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LINK_MODES))
    contradiction_weight: float = -10.0
    shared_types: frozenset[str] = frozenset({"anonymous_id", "device_id"})
    max_users_per_device: int = 1
    block_cap: int = 64
    max_candidates: int = 256
    blocklist: Blocklist = field(default_factory=Blocklist.default)

    def limit(self, id_type: str) -> int | None:
        """The limit of ``id_type``, or ``None`` when unlimited."""
        return self.limits.get(id_type)

    def link_mode(self, id_type: str) -> str:
        """The link mode of ``id_type`` (``deterministic`` when not configured)."""
        return self.link_modes.get(id_type, "deterministic")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolverConfig:
        """Build from the JSON form; keys not given keep their defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError("identity config: expected a JSON object")
        known = {
            "default_region",
            "limits",
            "link_modes",
            "contradiction_weight",
            "shared_types",
            "max_users_per_device",
            "block_cap",
            "max_candidates",
            "blocklist",
        }
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"identity config: unknown keys {sorted(unknown)}")
        limits = {**DEFAULT_LIMITS, **dict(data.get("limits", {}))}
        modes = {**DEFAULT_LINK_MODES, **dict(data.get("link_modes", {}))}
        for id_type, mode in modes.items():
            if mode not in LINK_MODES:
                raise ConfigError(
                    f"identity config: link mode of {id_type!r} must be one of "
                    + ", ".join(LINK_MODES)
                )
        for id_type, n in limits.items():
            if not isinstance(n, int) or n < 1:
                raise ConfigError(
                    f"identity config: limit of {id_type!r} must be a positive integer"
                )
        try:
            return cls(
                default_region=str(data.get("default_region", "GB")).upper(),
                limits=limits,
                link_modes=modes,
                contradiction_weight=float(data.get("contradiction_weight", -10.0)),
                shared_types=frozenset(data.get("shared_types", ("anonymous_id", "device_id"))),
                max_users_per_device=int(data.get("max_users_per_device", 1)),
                block_cap=int(data.get("block_cap", 64)),
                max_candidates=int(data.get("max_candidates", 256)),
                blocklist=Blocklist.with_extra(data.get("blocklist", {})),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"identity config: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> ResolverConfig:
        """Read the JSON form from a file."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"identity config: cannot read {path}: {exc}") from None
        return cls.from_dict(data)
