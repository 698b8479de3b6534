"""CPU cost of the profiles stage's ticks with many profiles in the table (pure fold, no broker).

Fills a table (``memory``: a dict of values; ``compact``: the compact:// store's mapping) with
``--profiles`` copies of simulated 14-day profiles, lets one event set the partition's stream
time to the end of the simulated period, and times the fold of the first record (which builds
the tick index from the table) and of ``--ticks`` ticks 5 s of stream time apart. Run it on
another source tree with ``PYTHONPATH=<tree>`` to compare.

Usage::

    .venv/bin/python -m bench.tick_cost --profiles 100000 --store compact
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import MutableMapping
from typing import Any

import orjson

from app.profiles.fold import Record, StageMemory, fold
from app.sessions.state import ev
from bench.inputs import END
from bench.state_scale import profile_templates
from tables.compact_store import CompactDict

TOPIC = "bench-profile-events"
WALL = 1_000_000.0


def fill(store: str, profiles: int, templates: list[dict[str, Any]]) -> MutableMapping[str, Any]:
    table: MutableMapping[str, Any] = CompactDict() if store == "compact" else {}
    for i in range(profiles):
        table[f"scale-{i:09d}"] = templates[i % len(templates)]
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--store", choices=("memory", "compact"), default="memory")
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--template-customers", type=int, default=300)
    args = parser.parse_args(argv)
    templates = profile_templates(11, args.template_customers)
    table = fill(args.store, args.profiles, templates)
    memory = StageMemory()
    now = END.timestamp()
    first = Record(TOPIC, 0, 0, orjson.dumps({"profile_id": "bench-clock", "ts": now, "event": ev("c", now).data}))
    started = time.process_time()
    for profile_id, (value, _) in fold([first], table, memory, WALL).pending.items():
        table[profile_id] = value
    index_s = time.process_time() - started
    tick_cpu, closed = [], 0
    for k in range(1, args.ticks + 1):
        started = time.process_time()
        batch = fold([Record(TOPIC, 0, k, orjson.dumps({"tick": WALL + 5.0 * k}))], table, memory, WALL)
        for profile_id, (value, _) in batch.pending.items():  # as the agent writes them
            table[profile_id] = value
        tick_cpu.append(time.process_time() - started)
        closed += sum(1 for kind, _, _ in batch.outputs if kind == "session_summaries")
    print(json.dumps({
        "profiles": args.profiles, "store": args.store, "first_record_cpu_s": round(index_s, 3),
        "tick_cpu_ms_mean": round(1000 * sum(tick_cpu) / len(tick_cpu), 2),
        "tick_cpu_ms_max": round(1000 * max(tick_cpu), 2), "sessions_closed_by_ticks": closed,
    }))


if __name__ == "__main__":
    main()
