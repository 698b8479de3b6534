"""Per-event cost of the pure hot-path functions of the pipeline's stages.

Simulated events are generated and validated first (not timed), keyed by the true
customer id, then each function is run over the whole stream ``--repeat`` times
with fresh states; the best run is reported (the least disturbed by other load). Times
are the process's CPU time (``time.process_time``), not wall time, so a shared machine's
other work does not count (it still disturbs caches: repeat and compare within one run).
Stateless steps (validation of the raw bytes, the identity observation) run over
the same events; ``profile_stage.apply_event`` is the whole pure step of the
profiles stage (sessions, profile, windows, rule segments with hysteresis and timers).

    .venv/bin/python -m bench.hot_path [--events 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from app.events.validation import Event, Validator
from app.identity import IdentityResolver
from app.profiles import state as profile_stage
from app.profiles import unified as profile
from app.profiles.features import rule_features
from app.profiles.quality import QualityMonitor
from app.segments import membership
from app.segments.evaluate import evaluate_and_schedule
from app.sessions import state as sessions
from bench.inputs import END, records, simulator_config


def events(n: int, seed: int = 7, customers: int = 1000) -> list[tuple[str, Event, bytes]]:
    """(customer id, validated event, raw record value) of the valid clickstream records."""
    validator = Validator.default()
    out = []
    for record in records(simulator_config(seed=seed, customers=customers, events=n)):
        if record.topic == "clickstream" and record.truth is not None:
            event = validator.clickstream(record.value, now=END.timestamp())
            if isinstance(event, Event):
                out.append((record.truth["customer_id"], event, record.value))
    return out


def _time_stateless(items: list[Any], step: Callable[[Any], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for item in items:
            step(item)
        best = min(best, time.process_time() - started)
    return best


def _rules_step(value: Any, event: Event, offset: int) -> Any:
    """The rule-segment part of ``profile_stage.apply_event`` alone, on that function's own output."""
    seg = value["segments"]
    decisions, _ = evaluate_and_schedule(
        profile_stage.default_rules(), rule_features(value["profile"], event.ts), seg["windows"], event.ts,
        membership.segments(seg["members"]),
    )
    return decisions


def _time(items: list[tuple[str, Event, bytes]], step: Callable[[Any, Event, int], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        states: dict[str, Any] = {}
        get = states.get
        started = time.process_time()
        for offset, (key, event, _) in enumerate(items):
            states[key] = step(get(key), event, offset)[0]
        best = min(best, time.process_time() - started)
    return best


def _stage_values(items: list[tuple[str, Event, bytes]]) -> list[tuple[Any, Event, int]]:
    """Each event with the profiles-stage value it is applied to (for timing one part alone)."""
    values: dict[str, Any] = {}
    out = []
    for offset, (key, event, _) in enumerate(items):
        value, _ = profile_stage.apply_event(values.get(key), event, offset, 0, key)
        values[key] = value
        out.append((value, event, offset))
    return out


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
    cases["profile_stage.apply_event (whole profiles step)"] = lambda s, e, o: profile_stage.apply_event(
        s, e, o, 0, "p", monitor=monitor
    )
    validator = Validator.default()
    resolver = IdentityResolver("bench-secret-0123456789")
    now = END.timestamp()
    stateless: dict[str, tuple[list[Any], Callable[[Any], Any]]] = {
        "validator.clickstream (bytes -> Event)": ([raw for _, _, raw in items], lambda raw: validator.clickstream(
            raw, now=now)),
        "resolver.observe_event (identity observation)": ([e.data for _, e, _ in items], resolver.observe_event),
        "rule segments alone (features + evaluate)": (_stage_values(items), lambda v: _rules_step(*v)),
    }
    print(f"{len(items)} valid events, best of {args.repeat}")
    for name, step in cases.items():
        seconds = _time(items, step, args.repeat)
        print(f"{name:50s} {seconds / len(items) * 1e6:7.2f} us/event  {len(items) / seconds:10,.0f} events/s")
    for name, (inputs, fn) in stateless.items():
        seconds = _time_stateless(inputs, fn, args.repeat)
        print(f"{name:50s} {seconds / len(items) * 1e6:7.2f} us/event  {len(items) / seconds:10,.0f} events/s")


if __name__ == "__main__":
    main()
