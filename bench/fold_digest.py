"""A digest of everything the profiles stage's fold writes and emits over the bench input.

An optimisation of the pure fold (rule evaluation, windows, sessions, the profile) must change
none of it: the table values (the changelog), the tick-index keys, the outputs in their order and
what is served to Redis. This folds the bench input's valid events (as bench/tick_index_writes.py
stamps them) in packs of ``--pack`` events, a tick after each, then ``--final-ticks`` ticks
5,000 s of stream time apart, and prints a SHA-256 per part and the fold's CPU time. Run it on
two trees (``PYTHONPATH=<tree>``) and compare the digests.

Usage::

    .venv/bin/python -m bench.fold_digest --input bench/data/clickstream-seed42-n20000-c250-d14-end20260101.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path
from typing import Any

import orjson

from app.profiles.fold import Record, StageMemory, fold
from app.profiles.pack import pack
from bench.tick_index_writes import NOW, profile_records


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()[:16]


def run(docs: list[bytes], pack_events: int, final_ticks: int) -> dict[str, Any]:
    """Fold ``docs`` and digest what the folds did (the same dict for trees whose folds agree)."""
    table: dict[str, Any] = {}
    memory = StageMemory(tick_limit=20)
    outputs = hashlib.sha256()
    served = hashlib.sha256()
    cpu = 0.0

    def step(record: Record, wall: float) -> None:
        nonlocal cpu
        started = time.process_time()
        batch = fold([record], table, memory, wall=wall)
        cpu += time.process_time() - started
        for kind, key, doc in batch.outputs:
            outputs.update(orjson.dumps([kind, key, doc], option=orjson.OPT_SORT_KEYS))
        for key, (value, at) in batch.served.items():
            served.update(orjson.dumps([key, value, at], option=orjson.OPT_SORT_KEYS))
        batch.write_to(table)

    offset, wall = 0, NOW
    for start in range(0, len(docs), pack_events):
        (value,) = pack(docs[start:start + pack_events])
        step(Record("profile-events", 0, offset, value), wall)
        wall += 5.0
        step(Record("profile-events", 0, offset + 1, orjson.dumps({"tick": wall})), wall)
        offset += 2
    for _ in range(final_ticks):
        wall += 5_000.0
        step(Record("profile-events", 0, offset, orjson.dumps({"tick": wall})), wall)
        offset += 1
    return {
        "pack": pack_events, "events": len(docs), "table": _digest(table),
        "outputs": outputs.hexdigest()[:16], "served": served.hexdigest()[:16],
        "fold_cpu_s": round(cpu, 3), "us_per_event": round(cpu / max(1, len(docs)) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--pack", type=int, action="append", help="events per pack (repeatable; default 500 and 5)")
    parser.add_argument("--final-ticks", type=int, default=200)
    args = parser.parse_args()
    docs = profile_records(args.input)
    for pack_events in args.pack or [500, 5]:
        print(orjson.dumps(run(docs, pack_events, args.final_ticks)).decode())


if __name__ == "__main__":
    main()
