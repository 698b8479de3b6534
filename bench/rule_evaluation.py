"""CPU per rule evaluation: the profiles fold's own evaluations over the bench input, timed alone.

Folds the bench input (as bench/tick_index_writes.py does, packs of 500 events) once, recording
the arguments of every ``evaluate_and_schedule`` call the fold makes, then runs those calls again
``--repeat`` times and prints the CPU µs per evaluation of each pass. Run it on another source tree
with ``PYTHONPATH=<tree>`` to compare evaluators on the same calls.

Usage::

    .venv/bin/python -m bench.rule_evaluation --input bench/data/clickstream-seed42-n20000-c250-d14-end20260101.jsonl
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import orjson

from app.profiles import state as profile_stage
from bench.tick_index_writes import count, profile_records


def recorded_evaluations(docs: list[bytes]) -> list[tuple[Any, ...]]:
    """The arguments of every rule evaluation of the fold over ``docs`` (copies: states are shared)."""
    calls: list[tuple[Any, ...]] = []
    evaluate = profile_stage.evaluate_and_schedule

    def recording(*args: Any) -> Any:
        calls.append(copy.deepcopy(args[1:]))
        return evaluate(*args)

    profile_stage.evaluate_and_schedule = recording  # type: ignore[assignment]  # recording only, restored below
    try:
        count(docs, 500)
    finally:
        profile_stage.evaluate_and_schedule = evaluate
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    calls = recorded_evaluations(profile_records(args.input))
    rules = profile_stage.default_rules()
    passes = []
    for _ in range(args.repeat):
        started = time.process_time()
        for call in calls:
            profile_stage.evaluate_and_schedule(rules, *call)
        passes.append(round((time.process_time() - started) / len(calls) * 1e6, 1))
    print(orjson.dumps({"evaluations": len(calls), "us_cpu_per_evaluation": passes}).decode())


if __name__ == "__main__":
    main()
