"""CPU per event of the ingest stage's pure per-event work, and a digest of everything it produces.

Pure (no broker, no Redis): the bench input's records, in batches of ``--batch`` as
``agents/ingest.py`` ``ingest_batch`` takes them (one partition, offset = line number), go
through the calls that function makes per event, with the same objects (the worker's
validator, resolver and hasher): validation, the anonymous id's hash, ``activity.apply``
chained through a ``pending`` dict, the identity observation, ``forward_decision``,
``current_profile``, ``profile_record``, ``serving.activity_entries``, and the documents
of the identity forwards and dead letters. The broker's and Redis's share (sends,
acknowledgements, packs, partitioner, metrics) is left out. Tables are dicts; the alias
table is empty (every anonymous id is on the profile its own hash gives, as before the
identity stage has resolved anything). ``ingest_work`` is a copy of that loop, not a call
of it (the agent's loop awaits its sends): a change to one must be made to the other.

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
from app.deadletters import dead_letter
from app.simulator import read_jsonl
from app.validation import Rejection
from tables import activity, serving
from tables.hooks import State
from tables.identity.stream import forward_decision, observation_to_dict
from tables.positions import position

NOW = 1767225600.0 + 86400  # a day after the bench input's end (SIM_END): every valid event is in range
PRODUCED_AT = NOW  # the Kafka timestamp of every record
PARTITION = 0
TOPIC = "clickstream"


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
    """``ingest_batch``'s per-event work over one batch of ``(offset, record)``; writes ``table``."""
    validator, resolver, settings = ingest.validator, ingest.resolver, ingest.settings
    out = Outputs()
    ids = resolver.hasher.memoising()
    pending: dict[str, tuple[State, int]] = {}
    served: dict[str, tuple[State, str]] = {}
    for offset, record in records:
        for item in validator.clickstream_items(record.value, now=now):
            out.events += 1
            result = item.result
            if isinstance(result, Rejection):
                raw = ingest.item_bytes(item)
                letter = dead_letter(
                    record.value if raw is None else raw, result, topic=TOPIC, partition=PARTITION,
                    offset=offset, key=record.key, timestamp_ms=int(PRODUCED_AT * 1000), now=now,
                    index=item.batch_index,
                )
                out.dead_letters.append(orjson.dumps(letter))
                out.outcomes["dead_letter:" + result.code] += 1
                continue
            key = ids.identifier("anonymous_id", result.anonymous_id)
            before = pending[key][0] if key in pending else table.get(key)
            state, outcome = activity.apply(
                before, result.type, result.event_id, result.ts, position(offset, item.batch_index or 0),
                settings.dedup_window,
            )
            out.outcomes[outcome] += 1
            if outcome == "replayed":
                profile_id = ingest.current_profile(resolver.observe_event(result.data, ids))
                out.profile_events.append((profile_id, ingest.profile_record(result, profile_id, PRODUCED_AT)))
            elif outcome == "applied":
                obs = resolver.observe_event(result.data, ids)
                seen, forward = forward_decision(state.get("identity_seen"), obs, resolver.hasher)
                if forward:
                    # forward_event's record, without the send
                    anon = ingest.anonymous_hash(obs)
                    doc = {"obs": observation_to_dict(obs), "anon": anon, "partition": PARTITION}
                    out.forwards.append(orjson.dumps(doc))
                    state = {**state, "identity_seen": seen}
                pending[key] = (state, PARTITION)
                profile_id = ingest.current_profile(obs)
                served[key] = (state, profile_id)
                out.profile_events.append((profile_id, ingest.profile_record(result, profile_id, PRODUCED_AT)))
            else:
                pending[key] = (state, PARTITION)
    for key, (state, partition) in pending.items():
        table[key] = state
        out.states.append((key, state, partition))
    for key, (state, profile_id) in served.items():
        out.redis.extend(serving.activity_entries(key, state, profile_id))
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
    # ``current_profile`` reads the module's alias table, a Faust table: a dict stands in for it.
    setattr(ingest, "alias_table", {})  # noqa: B010
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
