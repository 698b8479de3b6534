"""Online data-quality checks: monetary outliers, event-rate outliers and bot-like rates.

Nothing is dropped: a check only raises a flag, which :mod:`app.profiles.unified`
counts in the profile's ``quality`` part, and :class:`QualityMonitor` counts per
kind for metrics (``monitor.counts``).

Method (chosen for a per-event hot path)
----------------------------------------
**Robust z-score over a bounded window** (:class:`RobustZ`). The last
``window`` observations (default 512) are kept in a ring buffer; their median
and MAD are recomputed every ``refresh_every`` (128) observations, so the cost per
observation is O(1) amortised plus two sorts of 512 floats every 128 calls. The
score of ``x`` is ``0.6745 * (x - median) / MAD`` (Iglewicz and Hoaglin); it is
an outlier when ``|z| > z_threshold`` (3.5), once at least ``min_observations``
(50) have been seen. When the MAD is 0 (over half the window is one value), the
mean absolute deviation around the median times 1.2533 is used, and when that
is 0 too, no score is given. The window is deterministic (no sampling), so
the same stream gives the same flags. A score is computed against the
statistics *before* ``x`` is added.

* **Monetary**: purchase revenue, scored on ``log1p(revenue)`` (prices are
  log-normal), against all purchases of the partition.
* **Event rate**: each profile counts its events per UTC minute; when a minute
  is over (the profile's next event is in a later minute), its count is scored
  on ``log1p(count)`` against the minutes of all profiles. Minutes with fewer
  than ``min_rate_per_minute`` (10) events are never flagged: a human clicking
  a few times a minute is normal however quiet the population is.
* **Bot-like rate**: a minute with ``bot_events_per_minute`` (60, one per
  second sustained) events marks the profile as bot-like. This rule is local
  to the profile (no population statistics) and is applied by
  :func:`app.profiles.unified.apply` with or without a monitor.

The monitor's windows are per-worker working memory, not table state: after a
restart they warm up again (no flags for the first ``min_observations``). The
flags written into a profile are exact under replay, because a replayed event is
skipped by the profile before it reaches the monitor.

Examples
--------
>>> z = RobustZ(QualityConfig(min_observations=5, refresh_every=1))
>>> [z.observe(x) for x in (10, 11, 9, 10, 12)]
[None, None, None, None, None]
>>> round(z.observe(10.5), 3), z.observe(500) > 3.5
(0.337, True)
>>> m = QualityMonitor(QualityConfig(min_observations=5, refresh_every=1))
>>> [m.revenue_outlier(v) for v in (20, 25, 30, 22, 27, 24)]
[False, False, False, False, False, False]
>>> m.revenue_outlier(90000.0), m.counts["monetary_outlier"]
(True, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

KINDS: Final = ("monetary_outlier", "rate_outlier", "bot_minute", "bot_profile")


@dataclass(frozen=True, slots=True)
class QualityConfig:
    window: int = 512
    refresh_every: int = 128
    min_observations: int = 50
    z_threshold: float = 3.5
    min_rate_per_minute: int = 10
    bot_events_per_minute: int = 60

    def __post_init__(self) -> None:
        if self.window < 3 or self.refresh_every < 1 or self.min_observations < 3:
            raise ValueError("window and min_observations must be at least 3, refresh_every at least 1")
        if not self.z_threshold > 0 or self.bot_events_per_minute < 2:
            raise ValueError("z_threshold must be positive and bot_events_per_minute at least 2")


DEFAULT_QUALITY: Final = QualityConfig()


class RobustZ:
    """Robust z-scores against a bounded window of recent observations (see the module docstring)."""

    __slots__ = ("_since", "config", "mad", "median", "n", "pos", "values")

    def __init__(self, config: QualityConfig = DEFAULT_QUALITY) -> None:
        self.config = config
        self.values: list[float] = []
        self.pos = 0
        self.n = 0
        self.median: float | None = None
        self.mad = 0.0
        self._since = 0

    def score(self, x: float) -> float | None:
        """The robust z-score of ``x``, or ``None`` while warming up or without spread."""
        if self.n < self.config.min_observations or self.median is None or self.mad <= 0:
            return None
        return 0.6745 * (x - self.median) / self.mad

    def observe(self, x: float) -> float | None:
        """Score ``x`` against the window, then add it."""
        z = self.score(x)
        window = self.config.window
        if len(self.values) < window:
            self.values.append(x)
        else:
            self.values[self.pos] = x
            self.pos = (self.pos + 1) % window
        self.n += 1
        self._since += 1
        if self._since >= self.config.refresh_every or self.median is None:
            self._refresh()
        return z

    def _refresh(self) -> None:
        self._since = 0
        ordered = sorted(self.values)
        median = _median(ordered)
        deviations = sorted(abs(v - median) for v in ordered)
        mad = _median(deviations)
        if mad <= 0:
            mad = sum(deviations) / len(deviations) * 1.2533
        self.median, self.mad = median, mad

    def to_dict(self) -> dict[str, Any]:
        """A JSON snapshot (to keep the window across restarts, if wanted)."""
        return {"values": list(self.values), "pos": self.pos, "n": self.n, "since": self._since,
                "median": self.median, "mad": self.mad}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], config: QualityConfig = DEFAULT_QUALITY) -> RobustZ:
        z = cls(config)
        z.values, z.pos, z.n, z._since = list(doc["values"]), doc["pos"], doc["n"], doc["since"]
        z.median, z.mad = doc["median"], doc["mad"]
        return z


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class QualityMonitor:
    """Population checks shared by the profiles of one worker, with counts per flag kind."""

    config: QualityConfig = DEFAULT_QUALITY
    revenue: RobustZ = field(init=False)
    rate: RobustZ = field(init=False)
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.revenue = RobustZ(self.config)
        self.rate = RobustZ(self.config)
        self.counts = dict.fromkeys(KINDS, 0)

    def revenue_outlier(self, revenue: float) -> bool:
        """Score one purchase's revenue; count and return whether it is an outlier."""
        if not (isinstance(revenue, int | float) and math.isfinite(revenue) and revenue >= 0):
            return False
        z = self.revenue.observe(math.log1p(revenue))
        if z is not None and abs(z) > self.config.z_threshold:
            self.counts["monetary_outlier"] += 1
            return True
        return False

    def rate_outlier(self, events_in_minute: int) -> bool:
        """Score one finished minute of a profile; count and return whether it is an outlier."""
        z = self.rate.observe(math.log1p(events_in_minute))
        if events_in_minute >= self.config.min_rate_per_minute and z is not None and z > self.config.z_threshold:
            self.counts["rate_outlier"] += 1
            return True
        return False

    def bot_minute(self, first_for_profile: bool) -> None:
        """Count a bot-like minute (and a newly marked profile)."""
        self.counts["bot_minute"] += 1
        if first_for_profile:
            self.counts["bot_profile"] += 1
