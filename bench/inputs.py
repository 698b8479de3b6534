"""The simulator input of every benchmark: one builder, one fixed default end date.

Every script that feeds the simulator's records to what it measures builds them here, so
that two scripts given the same seed, customers, days and events measure the same traffic,
and a run today gives the same records as a run last month (the simulator's own default
end is the wall clock).

>>> config = simulator_config(seed=7, customers=50, events=100)
>>> (config.seed, config.customers, config.days, config.end == END, config.max_events)
(7, 50, 14.0, True, 100)
>>> [r.key for r in records(config)] == [r.key for r in records(simulator_config(seed=7, customers=50, events=100))]
True
>>> all(r.topic == config.topics.clickstream for r in clickstream(config))
True
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from app.simulator import SimConfig, SimRecord, iter_records

#: The end of every benchmark's simulated period unless a script is told otherwise
#: (``persona bench``'s input files are named by it: ``…-end20260101.jsonl``).
END = datetime(2026, 1, 1, tzinfo=UTC)
#: A day after :data:`END`: a validation clock at which every valid input event is in range.
NOW = END.timestamp() + 86400
#: Worker environment that accepts events as old as the input's (the default age limit is 90 days).
OLD_EVENTS_ENV = {"PERSONA_MAX_EVENT_AGE_DAYS": "36500"}


def recent_end() -> datetime:
    """Today 00:00 UTC: the default end of the benchmarks that run the worker on its wall clock.

    ``bench/identity_accuracy.py`` and ``bench/pipeline_accuracy.py`` validate the input as the
    worker does, against the wall clock and its 90-day age limit, and close the last sessions with
    a clock event at the wall time, so their input must end shortly before now; pass ``--end``
    (for example ``--end 2026-11-23``, as docs/benchmarks.md's accuracy runs) to repeat a run.
    """
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def simulator_config(
    seed: int = 42,
    customers: int = 250,
    days: float = 14.0,
    events: int | None = None,
    end: datetime = END,
    **options: Any,
) -> SimConfig:
    """The checked simulator configuration: ``events`` caps the records (``None``: the whole period).

    ``options`` are the other :class:`~app.simulator.SimConfig` fields (``topics``,
    ``malformed_share``, ``duplicate_share``, …).
    """
    return SimConfig(seed=seed, customers=customers, days=days, end=end, max_events=events, **options).check()


def records(config: SimConfig) -> Iterator[SimRecord]:
    """The simulator's records of ``config``'s run, every topic."""
    return iter_records(config)


def clickstream(config: SimConfig) -> Iterator[SimRecord]:
    """The clickstream records of ``config``'s run (its CRM records left out)."""
    return (r for r in iter_records(config) if r.topic == config.topics.clickstream)
