"""Sessions found by :mod:`app.sessions.state` against the simulator's true sessions.

Generates a seeded run, validates every clickstream record (malformed ones go
nowhere, as in the pipeline), feeds the valid events in arrival order to the pure
sessionizer keyed by the *true* ``customer_id`` (identity resolution is a separate
stage), closes what is left at the end, and compares with ``sessions.jsonl``
written by :class:`app.simulator.TruthWriter`.

Boundary agreement = true sessions whose (customer, start, end) equal those of a
found session / true sessions. Precision = found sessions matching a true one /
found sessions. Timestamps are compared at millisecond precision (the wire's).

The simulator sends events in time order (publisher retries aside). ``--delay S``
delays each event's arrival by a seeded uniform random time in [0, S] seconds and
feeds them in arrival order: with ``S`` at most the allowed lateness (300 s) the
boundaries must not change; beyond it, events that would touch an emitted session
are counted late and agreement drops.

    .venv/bin/python -m bench.sessions_accuracy [--seed 7] [--customers 400] [--events 20000] [--delay 0]
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from app.events.validation import Event, Validator
from app.sessions import state as sessions
from app.simulator import TruthWriter, iter_records
from bench.inputs import END, simulator_config


@dataclass(frozen=True)
class Agreement:
    true_sessions: int
    found_sessions: int
    matched: int
    events: int
    late: int
    seconds: float

    @property
    def recall(self) -> float:
        return self.matched / self.true_sessions if self.true_sessions else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.found_sessions if self.found_sessions else 1.0


def _ms(ts: float) -> int:
    return round(ts * 1000)


def parse_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def true_sessions(truth_dir: Path) -> set[tuple[str, int, int]]:
    """``(customer_id, start ms, end ms)`` of every true session in ``sessions.jsonl`` of a truth directory."""
    lines = (truth_dir / "sessions.jsonl").read_bytes().splitlines()
    return {(d["customer_id"], parse_ms(d["start"]), parse_ms(d["end"])) for d in map(orjson.loads, lines)}


def measure(seed: int = 7, customers: int = 400, events: int = 20000,
            config: sessions.SessionConfig = sessions.DEFAULT_CONFIG, delay: float = 0.0) -> Agreement:
    """Run the comparison; deterministic for fixed arguments."""
    sim = simulator_config(seed=seed, customers=customers, events=events)
    validator = Validator.default()
    now = END.timestamp()
    states: dict[str, dict[str, Any]] = {}
    found: set[tuple[str, int, int]] = set()
    n_found = n_events = n_late = 0
    elapsed = 0.0
    arrivals: list[tuple[float, int, str, Event]] = []
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        with TruthWriter(tmp, sim) as truth:
            for index, record in enumerate(truth.tee(iter_records(sim))):
                if record.topic != sim.topics.clickstream or record.truth is None:
                    continue
                event = validator.clickstream(record.value, now=now)
                if isinstance(event, Event):
                    arrives = event.ts + rnd.uniform(0.0, delay) if delay else float(index)
                    arrivals.append((arrives, index, record.truth["customer_id"], event))
        arrivals.sort(key=lambda a: (a[0], a[1]))
        for offset, (_, _, customer, event) in enumerate(arrivals):
            started = time.perf_counter()
            state, outcome, closed = sessions.apply(states.get(customer), event, offset, config)
            elapsed += time.perf_counter() - started
            states[customer] = state
            n_events += 1
            n_late += outcome == "late"
            for s in closed:
                found.add((customer, _ms(s["start"]), _ms(s["end"])))
                n_found += 1
        for customer, state in states.items():
            _, closed = sessions.close_expired(state, math.inf, config)
            for s in closed:
                found.add((customer, _ms(s["start"]), _ms(s["end"])))
                n_found += 1
        true = true_sessions(Path(tmp))
    matched = len(true & found)
    return Agreement(len(true), n_found, matched, n_events, n_late, elapsed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--events", type=int, default=20000, help="records generated (valid and not)")
    parser.add_argument("--delay", type=float, default=0.0, help="maximum random arrival delay, seconds")
    args = parser.parse_args(argv)
    a = measure(args.seed, args.customers, args.events, delay=args.delay)
    print(f"events {a.events}  true sessions {a.true_sessions}  found {a.found_sessions}  "
          f"matched {a.matched}  late {a.late}")
    print(f"boundary agreement (recall) {a.recall:.4f}  precision {a.precision:.4f}")
    print(f"sessions.apply: {a.seconds / max(a.events, 1) * 1e6:.2f} us/event "
          f"({a.events / a.seconds if a.seconds else 0:,.0f} events/s)")


if __name__ == "__main__":
    main()
