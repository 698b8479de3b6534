"""Per-event cost of the pure hot-path functions: ``sessions.apply`` and ``profile.apply``.

Simulated events are generated and validated first (not timed), keyed by the true
customer id, then each function is run over the whole stream ``--repeat`` times
with fresh states; the best run is reported (the least disturbed by other load).

    .venv/bin/python -m bench.hot_path [--events 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from app.simulator import SimConfig, iter_records
from app.validation import Event, Validator
from tables import profile, sessions
from tables.quality import QualityMonitor

END = datetime(2024, 3, 1, tzinfo=UTC)


def events(n: int, seed: int = 7, customers: int = 1000) -> list[tuple[str, Event]]:
    sim = SimConfig(seed=seed, customers=customers, end=END, max_events=n)
    validator = Validator.default()
    out = []
    for record in iter_records(sim):
        if record.topic == "clickstream" and record.truth is not None:
            event = validator.clickstream(record.value, now=END.timestamp())
            if isinstance(event, Event):
                out.append((record.truth["customer_id"], event))
    return out


def _time(items: list[tuple[str, Event]], step: Callable[[Any, Event, int], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        states: dict[str, Any] = {}
        get = states.get
        started = time.perf_counter()
        for offset, (key, event) in enumerate(items):
            states[key] = step(get(key), event, offset)[0]
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    items = events(args.events)
    monitor = QualityMonitor()
    cases: dict[str, Callable[[Any, Event, int], Any]] = {
        "sessions.apply": sessions.apply,
        "profile.apply": profile.apply,
        "profile.apply + QualityMonitor": lambda s, e, o: profile.apply(s, e, o, monitor=monitor),
        "both (sessions + profile with monitor)": lambda s, e, o: (
            (sessions.apply(s and s[0], e, o)[0], profile.apply(s and s[1], e, o, monitor=monitor)[0]),),
    }
    print(f"{len(items)} valid events, best of {args.repeat}")
    for name, step in cases.items():
        seconds = _time(items, step, args.repeat)
        print(f"{name:40s} {seconds / len(items) * 1e6:6.2f} us/event  {len(items) / seconds:10,.0f} events/s")


if __name__ == "__main__":
    main()
