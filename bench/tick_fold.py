"""The profiles stage's ticks over the bench input: what they emit, what they evaluate, what they leave due.

Pure (no broker): the bench input's valid events (as in bench/tick_index_writes.py) folded in
packs of ``--pack`` events with a tick after each, then ``--final-ticks`` ticks 5,000 s of
stream time apart (the customers gone quiet). Prints the outputs by kind, the rule evaluations
run, the changelog records, the CPU time of the folds, and ``changes_left``: the profiles
that, at the end, still hold a due evaluation that would change a membership (a tick should
have emitted it). Run it on another source tree with ``PYTHONPATH=<tree>``; ``--changes FILE``
writes every segment change (profile, segment, change, time, id), sorted, to compare two trees.

Usage::

    .venv/bin/python bench/tick_fold.py --input bench/data/clickstream-seed42-n20000-c250-d14-end20260101.jsonl
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from app.profiles import state as profile_stage
from app.profiles.fold import Batch, Record, StageMemory, fold
from app.profiles.pack import pack
from bench.tick_index_writes import NOW, profile_records


def run(docs: list[bytes], pack_events: int, final_ticks: int, changes: list[Any] | None = None) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    evaluate = profile_stage.evaluate

    def counted(*args: Any, **kwargs: Any) -> Any:
        counts["evaluations"] += 1
        return evaluate(*args, **kwargs)

    profile_stage.evaluate = counted  # counting only, restored below
    table: dict[str, Any] = {}
    memory = StageMemory(tick_limit=20)

    def write(batch: Batch) -> None:
        # Batch.write_to's loop, written out: this script also runs on trees older than write_to.
        for key, (index_value, _) in batch.index_writes.items():
            if index_value is None:
                table.pop(key, None)
            else:
                table[key] = index_value
        for key, (state, _) in batch.pending.items():
            table[key] = state
        counts["profile_records"] += len(batch.pending)
        counts["index_records"] += len(batch.index_writes)
        for kind, _, doc in batch.outputs:
            counts[kind] += 1
            if kind == "segment_changes" and changes is not None:
                changes.append([doc["profile_id"], doc["segment_id"], doc["change"], doc["at"], doc["change_id"]])

    offset, wall, cpu = 0, NOW, time.process_time()
    try:
        for start in range(0, len(docs), pack_events):
            (value,) = pack(docs[start:start + pack_events])
            write(fold([Record("profile-events", 0, offset, value)], table, memory, wall=wall))
            wall += 5.0
            write(fold([Record("profile-events", 0, offset + 1, orjson.dumps({"tick": wall}))], table, memory, wall))
            offset += 2
        for _ in range(final_ticks):
            wall += 5_000.0
            write(fold([Record("profile-events", 0, offset, orjson.dumps({"tick": wall}))], table, memory, wall))
            offset += 1
        cpu = time.process_time() - cpu
    finally:
        profile_stage.evaluate = evaluate
    now = memory.clock.now(0, wall)
    assert now is not None
    left = sum(
        1 for pid, value in table.items()
        if isinstance(value, dict) and "segments" in value and profile_stage.catch_up(value, now, pid)[1]
    )
    return {"events": len(docs), "pack": pack_events, **counts, "changes_left": left, "cpu_s": round(cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--pack", type=int, default=200)
    parser.add_argument("--final-ticks", type=int, default=200)
    parser.add_argument("--changes", type=Path, help="write the segment changes here (JSON, sorted)")
    args = parser.parse_args()
    changes: list[Any] = []
    print(orjson.dumps(run(profile_records(args.input), args.pack, args.final_ticks, changes)).decode())
    if args.changes:
        args.changes.write_bytes(orjson.dumps(sorted(changes)))


if __name__ == "__main__":
    main()
