"""What to simulate: :class:`SimConfig`, the single input of :func:`iter_records`.

Examples
--------
>>> from datetime import datetime, UTC
>>> config = SimConfig(seed=7, customers=50, end=datetime(2024, 3, 1, tzinfo=UTC))
>>> config.check() is config
True
>>> SimConfig(customers=0).check()
Traceback (most recent call last):
...
app.errors.ConfigError: customers must be at least 1, got 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.errors import ConfigError
from app.simulator.clock import utc_now


@dataclass(frozen=True)
class SimTopics:
    """Topic names; the attribute names match :class:`app.runtime.settings.Topics`."""

    clickstream: str = "clickstream"
    crm_profiles: str = "crm-profiles"


@dataclass(frozen=True)
class SimConfig:
    """Parameters of one simulated run; equal configs produce byte-identical output.

    Attributes
    ----------
    seed : int
        Seed of every random choice.
    customers : int
        Number of simulated people.
    days : float
        Length of the simulated period, ending at ``end``.
    end : datetime
        End of the period (UTC; a naive value is taken as UTC). Defaults to the
        time the config is created, so pass a fixed value for reproducible runs.
    malformed_share : float
        Expected share of all records that are deliberately invalid, in [0, 1).
    duplicate_share : float
        Share of valid clickstream events that are sent a second time, in [0, 1].
    crm_share : float
        Share of customers with at least one CRM/POS/call-centre record, in [0, 1].
    max_events : int or None
        Stop after this many records in all (valid, malformed and duplicates).
    topics : SimTopics
        Destination topic names.
    """

    seed: int = 42
    customers: int = 1000
    days: float = 14.0
    end: datetime = field(default_factory=utc_now)
    malformed_share: float = 0.01
    duplicate_share: float = 0.005
    crm_share: float = 0.6
    max_events: int | None = None
    topics: SimTopics = field(default_factory=SimTopics)

    def check(self) -> SimConfig:
        """Raise :class:`~app.errors.ConfigError` naming the first invalid field; return self."""
        if self.customers < 1:
            raise ConfigError(f"customers must be at least 1, got {self.customers}")
        if not (math.isfinite(self.days) and self.days > 0):
            raise ConfigError(f"days must be a positive number, got {self.days}")
        if self.days > 3660:
            raise ConfigError(f"days must be at most 3660, got {self.days}")
        if not 0.0 <= self.malformed_share < 1.0:
            raise ConfigError(f"malformed_share must be in [0, 1), got {self.malformed_share}")
        if not 0.0 <= self.duplicate_share <= 1.0:
            raise ConfigError(f"duplicate_share must be in [0, 1], got {self.duplicate_share}")
        if not 0.0 <= self.crm_share <= 1.0:
            raise ConfigError(f"crm_share must be in [0, 1], got {self.crm_share}")
        if self.max_events is not None and self.max_events < 0:
            raise ConfigError(f"max_events must not be negative, got {self.max_events}")
        if not self.topics.clickstream or not self.topics.crm_profiles:
            raise ConfigError("topic names must not be empty")
        if self.topics.clickstream == self.topics.crm_profiles:
            raise ConfigError("the clickstream and CRM topics must differ")
        end = self.end if self.end.tzinfo else self.end.replace(tzinfo=UTC)
        if end.year < 1971 or end - datetime(1970, 1, 1, tzinfo=UTC) < timedelta(days=self.days):
            raise ConfigError(f"the period of {self.days} days ending {end.isoformat()} starts before 1970")
        return self

