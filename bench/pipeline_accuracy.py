"""Accuracy of the whole pipeline, read from its output topics, against the simulator's ground truth.

One command, one report (``make accuracy``)::

    .venv/bin/python -m bench.pipeline_accuracy [--customers 300] [--seed 7] [--end 2026-11-23]
        [--max-events N] [--rate 0] [--workers 1] [--partitions 1] [--json OUT]

Starts the embedded stack (Tansu, redis-server) and the workers (``bench/harness.py``),
publishes a seeded simulator run with its ground truth (``app/simulator/truth.py``) as
fast as the broker takes it, waits until the pipeline is idle, then reads the output
topics ``session-summaries``, ``segment-changes``, ``identity-changes`` and
``dead-letters`` from the beginning and scores them.

Waiting for idle: first until every anonymous id of a valid event has its profile
(identity settled) and the workers' counters stopped moving; then one *clock event* per
``profile-events`` partition, an event of a bench-only anonymous id stamped with the
wall-clock time. The profiles stage closes sessions by stream time (the newest event
time of the partition, moved on by wall time), and the simulated traffic ends at
``--end``, so without the clock event the last sessions of the run would close only
30 minutes of wall time later. After it, every simulated session is due; the bench waits
until the counters are quiet for three timer ticks. The clock events' own records
are not scored.

(a) Sessions: boundary agreement defined as in ``bench/sessions_accuracy.py``: true
    sessions whose ``(customer, start, end)`` equal those of a found session, to the
    millisecond, / true sessions; precision = found sessions equal to a true one / found
    sessions. The pipeline keys sessions by ``profile_id``, not by customer; a found
    session is attributed to the customer of its *first event* (its ``session_id`` is
    ``ses-<first event_id>``; the truth's ``events.jsonl`` maps event ids to customers).
    Sessions of one customer on two devices are never concurrent in the simulator, and
    the profile an event is stamped with is the same for all of an anonymous id's events
    until identity moves it, so a true session is found whole unless its events were
    stamped with two profiles (a login in mid-session moves the anonymous id to the
    merged profile): those are counted as ``split_by_profile_change``.
(b) Identity: pairwise precision/recall of *anonymous id -> profile* against the
    customer, over all anonymous ids and over the identifiable ones (a user id or an
    identify event), with the exact-identifier ceiling (``bench/identity_accuracy.py``).
    Two assignments: as served (the identity stage's alias, Redis
    ``persona:identity:<hash>``), and as the output topics carry it (the profile of each
    anonymous id's last session summary, followed through the ``merged`` records of
    ``identity-changes``, as a downstream consumer would).
(c) Segments: changes by kind, segment and direction, changes without a reason, flaps
    (a change undoing the same profile's previous change of that segment within 1 h /
    24 h, as ``bench/segments_quality.py`` counts them), and changes dated after the
    simulated period (caused by the clock event).

Every record of every output topic is validated against its schema in ``schemas/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from aiokafka.partitioner import murmur2

from app.cli.console import scrape
from app.events.validation import SCHEMA_DIR
from app.identity import IdentityResolver
from app.identity.hashing import profile_id_for
from app.identity.normalise import normalise_id
from app.runtime.rebuild import read_changelog
from app.runtime.settings import DEV_HMAC_SECRET, Settings
from app.simulator import SimRecord
from app.simulator.producer import produce
from bench.harness import RunningPipeline, report_main, running_pipeline, simulation_parser, wait_stable
from bench.identity_accuracy import (
    Expected,
    clusters,
    expected,
    identity_report,
    read_assignment,
    simulated,
    wait_settled,
)
from bench.segments_quality import Flaps
from bench.sessions_accuracy import parse_ms, true_sessions

#: The profiles stage's timer period (agents/profiles.py): quiet for three ticks means idle.
TICK_SECONDS = 5.0
OUTPUTS = ("session-summaries", "segment-changes", "identity-changes", "dead-letters")


# ---------------------------------------------------------------------------- pure scoring
def anon_hash(anonymous_id: str, secret: str = DEV_HMAC_SECRET) -> str:
    """The keyed hash the pipeline keys an anonymous id by (as ``bench.identity_accuracy.expected``)."""
    return IdentityResolver(secret).identifier_hash("anonymous_id", normalise_id(anonymous_id) or anonymous_id)


def clock_anonymous_ids(partitions: int, secret: str = DEV_HMAC_SECRET) -> list[str]:
    """One bench-only anonymous id per ``profile-events`` partition (its own profile lands there).

    Ingest keys ``profile-events`` by the profile id, and a new anonymous id's profile is
    ``profile_id_for(its hash)``; the producer's partitioner is Kafka's murmur2.

    Examples
    --------
    >>> ids = clock_anonymous_ids(3)
    >>> len(ids), len(set(ids)), all(i.startswith("bench-clock-") for i in ids)
    (3, 3, True)
    """
    out: dict[int, str] = {}
    n = 0
    while len(out) < partitions:
        anon = f"bench-clock-{n}"
        partition = (murmur2(profile_id_for(anon_hash(anon, secret)).encode()) & 0x7FFFFFFF) % partitions
        out.setdefault(partition, anon)
        n += 1
    return [out[p] for p in range(partitions)]


def clock_event(anonymous_id: str, now: float) -> bytes:
    """A page view stamped ``now``: moves its partition's stream time to the wall clock."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"{anonymous_id}-{int(now * 1000)}",
            "type": "page_view",
            "timestamp": stamp,
            "anonymous_id": anonymous_id,
            "properties": {"url": "https://bench.invalid/clock"},
        }
    )


def session_scores(
    found: Iterable[Mapping[str, Any]], true: set[tuple[str, int, int]], customer_of_event: Mapping[str, str]
) -> dict[str, Any]:
    """Boundary agreement of session summaries with the true sessions (see the module docstring).

    Examples
    --------
    >>> true = {("c1", 0, 1000), ("c1", 9000, 9500)}
    >>> found = [{"session_id": "ses-e1", "start": "1970-01-01T00:00:00Z", "end": "1970-01-01T00:00:01Z"},
    ...          {"session_id": "ses-e7", "start": "1970-01-01T00:00:09Z", "end": "1970-01-01T00:00:09.2Z"},
    ...          {"session_id": "ses-e8", "start": "1970-01-01T00:00:09.3Z", "end": "1970-01-01T00:00:09.5Z"}]
    >>> s = session_scores(found, true, {"e1": "c1", "e7": "c1", "e8": "c1"})
    >>> s["matched"], s["agreement"], s["split_by_profile_change"], s["precision"]
    (1, 0.5, 1, 0.3333)
    """
    keys: list[tuple[str, int, int]] = []
    unattributed = 0
    for summary in found:
        customer = customer_of_event.get(str(summary["session_id"]).removeprefix("ses-"))
        if customer is None:
            unattributed += 1
            continue
        keys.append((customer, parse_ms(summary["start"]), parse_ms(summary["end"])))
    found_set = set(keys)
    matched = true & found_set
    by_customer: dict[str, list[tuple[int, int]]] = {}
    for customer, start, end in found_set - matched:
        by_customer.setdefault(customer, []).append((start, end))
    # A missed true session covered by two or more found pieces of the same customer was cut in two.
    split = sum(
        1
        for customer, start, end in true - matched
        if sum(1 for s, e in by_customer.get(customer, ()) if start <= s and e <= end) >= 2
    )
    return {
        "true_sessions": len(true),
        "found_sessions": len(keys),
        "found_unattributed": unattributed,
        "duplicate_summaries": len(keys) - len(found_set),
        "matched": len(matched),
        "agreement": round(len(matched) / len(true), 4) if true else 1.0,
        "precision": round(len(matched) / len(found_set), 4) if found_set else 1.0,
        "split_by_profile_change": split,
    }


def output_assignment(
    found: Iterable[Mapping[str, Any]], changes: Iterable[Mapping[str, Any]], anon_of_event: Mapping[str, str]
) -> dict[str, str | None]:
    """Anonymous id hash -> profile as the outputs carry it: its last session's profile, through merges.

    Examples
    --------
    >>> found = [{"session_id": "ses-e1", "profile_id": "p-2", "end": "1970-01-01T00:00:01Z"},
    ...          {"session_id": "ses-e2", "profile_id": "p-3", "end": "1970-01-01T00:00:02Z"}]
    >>> merges = [{"change": "merged", "profile_id": "p-1", "absorbed_profile_ids": ["p-3"]}]
    >>> output_assignment(found, merges, {"e1": "h1", "e2": "h2"})
    {'h1': 'p-2', 'h2': 'p-1'}
    """
    survivor: dict[str, str] = {}
    for change in changes:
        if change.get("change") == "merged":
            for absorbed in change.get("absorbed_profile_ids") or ():
                survivor[absorbed] = change["profile_id"]

    def final(pid: str) -> str:
        seen = set()
        while pid in survivor and pid not in seen:
            seen.add(pid)
            pid = survivor[pid]
        return pid

    last: dict[str, tuple[int, str]] = {}
    for summary in found:
        anon = anon_of_event.get(str(summary["session_id"]).removeprefix("ses-"))
        if anon is None:
            continue
        end = parse_ms(summary["end"])
        if anon not in last or end >= last[anon][0]:
            last[anon] = (end, str(summary["profile_id"]))
    return {anon: final(pid) for anon, (_, pid) in sorted(last.items())}


def unknown_profiles(found: Iterable[Mapping[str, Any]], known: set[str]) -> dict[str, int]:
    """Session summaries keyed by a profile id that identity never served nor named in a change.

    Ingest stamps an anonymous id without an alias yet with ``profile_id_for(its hash)``.
    When that anonymous id's first identity observation carries a user id, the resolver
    keys the new profile by the user id instead, so the provisional id is never created,
    never merged and never reported: outputs under it cannot be followed to a customer.

    Examples
    --------
    >>> unknown_profiles([{"profile_id": "p-1"}, {"profile_id": "p-2"}, {"profile_id": "p-2"}], {"p-1"})
    {'sessions': 2, 'profiles': 1}
    """
    orphans = [str(s["profile_id"]) for s in found if str(s["profile_id"]) not in known]
    return {"sessions": len(orphans), "profiles": len(set(orphans))}


def segment_report(changes: list[Mapping[str, Any]], simulated_end: float) -> dict[str, Any]:
    """Counts by kind/segment/direction, reasons, flaps (1 h, 24 h) and changes after the simulated period.

    Examples
    --------
    >>> c = [{"profile_id": "p", "segment_id": "lapsed", "segment_kind": "rule", "change": "entered",
    ...       "at": "2026-01-01T00:00:00Z", "reason": {"rule": "lapsed"}},
    ...      {"profile_id": "p", "segment_id": "lapsed", "segment_kind": "rule", "change": "exited",
    ...       "at": "2026-01-01T00:30:00Z", "reason": {}}]
    >>> r = segment_report(c, simulated_end=0.0)
    >>> r["by_segment"], r["without_reason"], r["flaps"]["flaps_within_1h"], r["after_simulated_end"]
    ({'rule/lapsed': {'entered': 1, 'exited': 1}}, 1, 1, 2)
    """
    counts: dict[str, Counter[str]] = {}
    flaps, flaps_in_period = Flaps(), Flaps()
    ordered = sorted(changes, key=lambda c: parse_ms(c["at"]))
    for c in ordered:
        counts.setdefault(f"{c['segment_kind']}/{c['segment_id']}", Counter())[c["change"]] += 1
        at = parse_ms(c["at"]) / 1000
        flaps.add([dict(c)], at)
        if at <= simulated_end:
            flaps_in_period.add([dict(c)], at)
    return {
        "changes": len(changes),
        "by_segment": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())},
        "without_reason": sum(1 for c in changes if not c.get("reason")),
        "flaps": flaps.report(),
        "after_simulated_end": sum(1 for c in changes if parse_ms(c["at"]) > simulated_end * 1000),
        "flaps_within_simulated_period": flaps_in_period.report(),
    }


def schema_report(records: Mapping[str, list[Any]], schema_dir: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    """Per output topic: records read, records failing their schema, the first failure."""
    out: dict[str, dict[str, Any]] = {}
    for topic, values in records.items():
        check = fastjsonschema.compile(json.loads((schema_dir / f"{topic}.v1.json").read_text()))
        invalid, first = 0, None
        for value in values:
            try:
                check(value)
            except fastjsonschema.JsonSchemaException as exc:
                invalid += 1
                first = first or str(exc)
        out[topic] = {"records": len(values), "invalid": invalid, "first_error": first}
    return out


# ---------------------------------------------------------------------------- the run
def counters(pipeline: RunningPipeline) -> tuple[float, ...]:
    """The workers' counters that move while anything is still being processed."""
    snap = scrape(pipeline.ports)
    return (
        snap.processed,
        snap.dead_letter_total,
        sum(snap.duplicates.values()),
        snap.sessions_closed,
        sum(snap.segment_changes.values()),
        sum(snap.identity_changes.values()),
    )


def metric_totals(ports: list[int], names: Iterable[str]) -> dict[str, float]:
    """``name{labels}`` -> value summed over the workers, for the named counters."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(names)
    totals: dict[str, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2.0) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    key = f"{sample.name}{{{labels}}}"
                    totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def read_outputs(settings: Settings, timeout: float) -> dict[str, list[Any]]:
    topics = settings.topics
    names = {
        "session-summaries": topics.session_summaries,
        "segment-changes": topics.segment_changes,
        "identity-changes": topics.identity_changes,
        "dead-letters": topics.dead_letters,
    }

    async def read_all() -> dict[str, list[Any]]:
        return {
            name: [orjson.loads(value) for _, value in await read_changelog(settings, topic, timeout) if value]
            for name, topic in names.items()
        }

    return asyncio.run(read_all())


def run(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Start, publish, wait for idle, read the outputs, score. Returns the report."""
    import redis

    timings: dict[str, float] = {}
    with running_pipeline(run_dir, "accuracy-bench", args.workers, args.partitions) as pipeline:
        settings = pipeline.settings
        truth_dir = run_dir / "truth"
        records = simulated(args.seed, args.customers, args.end, args.max_events or None, settings.topics, truth_dir)
        exp: Expected = expected(records)
        started = time.monotonic()
        asyncio.run(produce(records, pipeline.stack.bootstrap, rate=args.rate or None))
        timings["publish"] = time.monotonic() - started
        client = redis.Redis.from_url(pipeline.stack.redis_url, decode_responses=True)
        served = wait_settled(lambda: read_assignment(client, exp.truth), timeout=args.timeout)
        wait_stable(lambda: counters(pipeline), args.timeout, 2 * TICK_SECONDS, what="ingest", alive=pipeline.workers)
        timings["publish_to_identity_settled"] = time.monotonic() - started
        topic = settings.topics.clickstream
        now = time.time()
        clock = [SimRecord(topic, a.encode(), clock_event(a, now)) for a in clock_anonymous_ids(args.partitions)]
        before = counters(pipeline)
        asyncio.run(produce(clock, pipeline.stack.bootstrap, rate=None))
        wait_stable(
            lambda: counters(pipeline),
            args.timeout,
            3 * TICK_SECONDS,
            ready=lambda now: now != before,
            what="the sessions after the clock event",
            alive=pipeline.workers,
        )
        timings["publish_to_idle"] = time.monotonic() - started
        late_events = metric_totals(
            pipeline.ports, ("persona_session_late_events_total", "persona_profile_redirects_total")
        )
        outputs = read_outputs(settings, args.timeout)
    customer_of_event, anon_of_event = event_truth(truth_dir)
    sessions = session_scores(outputs["session-summaries"], true_sessions(truth_dir), customer_of_event)
    known = {p for p in served.values() if p} | {
        p
        for c in outputs["identity-changes"]
        for p in [c["profile_id"], *(c.get("absorbed_profile_ids") or ()), *(c.get("new_profile_ids") or ())]
    }
    via_outputs = output_assignment(outputs["session-summaries"], outputs["identity-changes"], anon_of_event)
    return {
        "command": " ".join(["python -m bench.pipeline_accuracy", *sys.argv[1:]]),
        "records": len(records),
        "clickstream_valid_events": len(customer_of_event),
        "workers": args.workers,
        "partitions": args.partitions,
        "rate": args.rate or "as fast as possible",
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "sessions": {**sessions, "late_and_redirected": late_events},
        "identity_served": identity_report(exp, served),
        "identity_from_outputs": {
            "anonymous_ids_with_sessions": len(via_outputs),
            # Same clusters? An anonymous id whose outputs end under another cluster than the served one.
            "same_clusters_as_served": clusters(via_outputs) == clusters({a: served.get(a) for a in via_outputs}),
            "sessions_under_unknown_profile": unknown_profiles(outputs["session-summaries"], known),
            **{k: v for k, v in identity_report(exp, via_outputs).items() if k in ("all", "identifiable", "profiles")},
        },
        "segments": segment_report(outputs["segment-changes"], args.end.timestamp()),
        "identity_changes": dict(Counter(c["change"] for c in outputs["identity-changes"])),
        "dead_letters": dict(Counter(d["reason"]["code"] for d in outputs["dead-letters"])),
        "dead_letters_expected": dict(Counter(m["expected_reason"] for m in read_jsonl(truth_dir / "malformed.jsonl"))),
        "schemas": schema_report(outputs),
    }


def read_jsonl(path: Path) -> list[Any]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def event_truth(truth_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``event_id -> customer_id`` and ``event_id -> anonymous id hash`` from ``events.jsonl``."""
    customer: dict[str, str] = {}
    anon: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for doc in read_jsonl(truth_dir / "events.jsonl"):
        customer[doc["event_id"]] = doc["customer_id"]
        a = doc["anonymous_id"]
        anon[doc["event_id"]] = hashes.get(a) or hashes.setdefault(a, anon_hash(a))
    return customer, anon


def main(argv: list[str] | None = None) -> int:
    parser = simulation_parser(__doc__.split("\n\n")[0], customers=300, timeout=600.0)
    parser.add_argument("--rate", type=float, default=0, help="records/s to publish at (0: as fast as possible)")
    args = parser.parse_args(argv)
    if time.time() - args.end.timestamp() < 3600:
        parser.error("--end must be at least 1 h in the past: the clock event must make every session due")
    return report_main(args, run, "accuracy-bench-")


if __name__ == "__main__":
    sys.exit(main())
