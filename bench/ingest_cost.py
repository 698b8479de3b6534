"""CPU per event of the ingest stage's pure per-event work, and a digest of everything it produces.

Pure (no broker, no Redis): the bench input's records, in batches of ``--batch`` as
``agents/ingest.py`` ``ingest_batch`` takes them (one partition, offset = line number), go
through the agent's own fold (``app/ingest/fold.py``: validation, the anonymous id's
hash, ``activity.apply`` chained through ``pending``, the identity observation,
``forward_decision``, the profile id, the profile-events records), with the worker's validator,
resolver and hasher, and then through what the agent builds to send: the Redis entries and the
documents of the identity forwards and dead letters. The broker's and Redis's share (sends,
acknowledgements, packs, partitioner, metrics) is left out. Tables are dicts; the alias table is
empty (every anonymous id is on the profile its own hash gives, as before the identity stage has
resolved anything).

The bench input has ~36 anonymous ids per batch of 500, far fewer than a busy partition
has: what a per-batch memo saves shows here more than it would there (``--batch 1`` is
the other extreme, though it adds per-batch costs of its own).

The figure is ``time.process_time()`` over the per-event work only, divided by the
events (valid and refused). The digest is a SHA-256 over everything produced, each item
as orjson with ``OPT_SORT_KEYS`` and in order: the activity states written per batch,
the profile-events records (bytes), the identity forwards, the Redis entries, the dead
letters (with a fixed ``received_at``), the outcome counts. Equal digests before and
after a change to that code are the evidence that the change altered no output.

Usage::

    PYTHONPATH=. .venv/bin/python -m bench.ingest_cost \
        --input bench/data/clickstream-seed42-n20000-c250-d14-end20260101.jsonl [--batch 500] [--repeat 3]

It runs as a plain script too (``python bench/ingest_cost.py ...``), so a copy measures
another tree's code with ``PYTHONPATH`` set to that tree.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agents import ingest
from app.events.deadletters import dead_letter
from app.identity.stream import observation_to_dict
from app.ingest import fold as activity_batch
from app.ingest.fold import Source
from app.serving import keys as serving
from app.simulator import read_jsonl
from bench.inputs import NOW  # a day after the bench input's end: every valid event is in range
from tables.hooks import State

PRODUCED_AT = NOW  # the Kafka timestamp of every record
PARTITION = 0
TOPIC = "clickstream"
#: The alias table: empty, as before the identity stage has resolved anything.
ALIASES: dict[str, Any] = {}


@dataclass
class Outputs:
    """What one batch produced, in the order the stage produces it."""

    states: list[tuple[str, State, int]] = field(default_factory=list)
    profile_events: list[tuple[str, bytes]] = field(default_factory=list)
    forwards: list[bytes] = field(default_factory=list)
    redis: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    events: int = 0


def ingest_work(records: list[tuple[int, Any]], table: dict[str, State], now: float) -> Outputs:
    """``ingest_batch``'s per-event work over one batch of ``(offset, record)``; writes ``table``.

    The fold is the agent's own (app/ingest/fold.py); what the agent sends is built here
    as the documents it sends, without the sends.
    """
    sources = [Source(record.value, PARTITION, offset, PRODUCED_AT) for offset, record in records]
    batch = activity_batch.fold(
        sources, table, ALIASES, ingest.validator, ingest.resolver, now, ingest.settings.dedup_window
    )
    out = Outputs()
    for refused in batch.rejected:
        offset, record = records[refused.record]
        letter = dead_letter(
            record.value if refused.raw is None else refused.raw, refused.rejection, topic=TOPIC,
            partition=PARTITION, offset=offset, key=record.key, timestamp_ms=int(PRODUCED_AT * 1000), now=now,
            index=refused.batch_index,
        )
        out.dead_letters.append(orjson.dumps(letter))
        out.outcomes["dead_letter:" + refused.rejection.code] += 1
    out.profile_events = batch.to_profiles
    for obs, partition in batch.forwards:  # forward_event's record, without the send
        doc = {"obs": observation_to_dict(obs), "anon": activity_batch.anonymous_hash(obs), "partition": partition}
        out.forwards.append(orjson.dumps(doc))
    for key, (state, partition) in batch.pending.items():
        table[key] = state
        out.states.append((key, state, partition))
    for key, (state, profile_id) in batch.served.items():
        out.redis.extend(serving.activity_entries(key, state, profile_id))
    for outcome, n in (("applied", sum(batch.processed.values())), ("replayed", batch.duplicates["offset"]),
                       ("duplicate_event_id", batch.duplicates["event_id"])):
        if n:
            out.outcomes[outcome] += n
    out.events = sum(out.outcomes.values())
    return out


def digest_update(digest: Any, out: Outputs) -> None:
    def put(value: Any) -> None:
        digest.update(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        digest.update(b"\n")

    for key, state, partition in out.states:
        put(["state", key, state, partition])
    for profile_id, record in out.profile_events:
        put(["profile_event", profile_id])
        digest.update(record)
    for forward in out.forwards:
        put("forward")
        digest.update(forward)
    for redis_key, fields in out.redis:
        put(["redis", redis_key, fields])
    for letter in out.dead_letters:
        put("dead_letter")
        digest.update(letter)
    put(["outcomes", dict(out.outcomes)])


def run(records: list[tuple[int, Any]], batch: int) -> tuple[float, int, str, Counter[str]]:
    """One pass over ``records`` from empty tables: (CPU seconds, events, digest, outcome counts)."""
    table: dict[str, State] = {}
    digest = hashlib.sha256()
    cpu, events, outcomes = 0.0, 0, Counter[str]()
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        began = time.process_time()
        out = ingest_work(chunk, table, NOW)
        cpu += time.process_time() - began
        events += out.events
        outcomes.update(out.outcomes)
        digest_update(digest, out)
    return cpu, events, digest.hexdigest(), outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="passes, each from empty tables")
    args = parser.parse_args()
    records = list(enumerate(read_jsonl(args.input)))
    per_event: list[float] = []
    digests: set[str] = set()
    for _ in range(args.repeat):
        cpu, events, digest, outcomes = run(records, args.batch)
        per_event.append(cpu / events * 1e6)
        digests.add(digest)
    if len(digests) != 1:
        raise SystemExit(f"passes disagree: {sorted(digests)}")
    print(orjson.dumps({
        "records": len(records), "events": events, "batch": args.batch,
        "us_cpu_per_event": [round(x, 1) for x in per_event],
        "us_cpu_per_event_median": round(statistics.median(per_event), 1),
        "digest": digests.pop(), "outcomes": dict(sorted(outcomes.items())),
    }).decode())


if __name__ == "__main__":
    main()
