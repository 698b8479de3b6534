"""Changelog records the profiles stage's fold writes for the bench input: tick-index keys and profiles.

Pure (no broker): the bench input's valid events, stamped with the profile of their anonymous
id alone, folded in packs of ``--batch`` events, each batch's writes applied to a dict table.

Usage::

    .venv/bin/python -m bench.tick_index_writes --batch 500 \
        --input bench/data/clickstream-seed42-n20000-c250-d14-end20260101.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from app.events.validation import Event, Validator
from app.identity.hashing import profile_id_for
from app.identity.pii import keyed_hash
from app.profiles.fold import Record, StageMemory, fold
from app.profiles.pack import pack
from app.runtime.settings import DEV_HMAC_SECRET
from app.simulator import read_jsonl
from bench.inputs import NOW


def profile_records(path: Path) -> list[bytes]:
    validator, out = Validator(), []
    for record in read_jsonl(path):
        for item in validator.clickstream_items(record.value, now=NOW):
            if isinstance(item.result, Event):
                event = item.result
                pid = profile_id_for(keyed_hash(DEV_HMAC_SECRET, "anonymous_id", event.anonymous_id))
                out.append(orjson.dumps({"profile_id": pid, "ts": event.ts, "event": event.data, "produced_at": 0.0}))
    return out


def count(docs: list[bytes], batch: int) -> dict[str, int]:
    table: dict[str, Any] = {}
    memory = StageMemory(tick_limit=20)
    index = profiles = 0
    for offset, start in enumerate(range(0, len(docs), batch)):
        (value,) = pack(docs[start:start + batch])
        folded = fold([Record("profile-events", 0, offset, value)], table, memory, wall=NOW)
        index += len(folded.index_writes)
        profiles += len(folded.pending)
        folded.write_to(table)
    return {"events": len(docs), "batch": batch, "index_records": index, "profile_records": profiles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    print(orjson.dumps(count(profile_records(args.input), args.batch)).decode())


if __name__ == "__main__":
    main()
