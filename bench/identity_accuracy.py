"""Identity resolution accuracy through the running pipeline, against the simulator's ground truth.

Starts the embedded stack (Tansu broker and redis-server), ``--workers`` worker
processes in one group with ``--partitions`` partitions, publishes seeded simulator
traffic, waits until every anonymous id of a valid event has its profile in Redis
(``persona:identity:<anonymous_id hash>``, written from the alias table) and the
assignment has stopped changing, then scores the assignment *anonymous id → profile*
against the simulator's ``customer_id``: pairwise precision and recall (two anonymous
ids are a predicted pair when they end in the same profile, a true pair when they
belong to the same simulated customer).

Two recalls are reported. Over *all* anonymous ids, and over the *identifiable*
ones: anonymous ids whose events carry a user id or an ``identify`` event at least
once. The simulator also makes visitors who never log in on a browser; nothing in
their traffic ties that browser to the person, so no resolver can link them, and
they bound the recall over all anonymous ids well below 1. The report measures that
bound (``exact_identifier_ceiling``: anonymous ids joined by any shared exact
identifier, with no guard at all).

Usage::

    .venv/bin/python -m bench.identity_accuracy [--customers 200] [--seed 7] [--end 2026-11-23]
        [--max-events N] [--workers 1] [--partitions 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from app.events.validation import Event, Rejection, Validator
from app.identity import IdentityResolver, IdentityState
from app.identity.normalise import normalise_id
from app.runtime.settings import DEV_HMAC_SECRET, Topics
from app.simulator import SimRecord, SimTopics, TruthWriter, iter_records
from app.simulator.producer import produce
from bench.harness import report_main, running_pipeline, simulation_parser, wait_stable
from bench.inputs import simulator_config


@dataclass(frozen=True)
class Scores:
    """Pairwise scores of an assignment against the truth."""

    ids: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0


def pairwise(
    assignment: Mapping[str, str | None], truth: Mapping[str, str], keep: Iterable[str] | None = None
) -> Scores:
    """Pairwise precision/recall of ``assignment`` (id → profile) against ``truth`` (id → entity).

    Only ids in both (and in ``keep``, when given) are scored; an id without a profile
    is a singleton.

    Examples
    --------
    >>> s = pairwise({"a": "p1", "b": "p1", "c": "p2", "d": None}, {"a": "x", "b": "x", "c": "x", "d": "y"})
    >>> (s.ids, s.true_pairs, s.predicted_pairs, s.correct_pairs, round(s.recall, 3), s.precision)
    (4, 3, 1, 1, 0.333, 1.0)
    """
    allowed = set(keep) if keep is not None else None
    ids = sorted(i for i in truth if i in assignment and (allowed is None or i in allowed))
    true_pairs = predicted = correct = 0
    for a, b in itertools.combinations(ids, 2):
        same_truth = truth[a] == truth[b]
        pa = assignment[a]
        same_profile = pa is not None and pa == assignment[b]
        true_pairs += same_truth
        predicted += same_profile
        correct += same_truth and same_profile
    return Scores(len(ids), true_pairs, predicted, correct)


def clusters(assignment: Mapping[str, str | None]) -> frozenset[frozenset[str]]:
    """The partition of ids into profiles, without the profile id strings (they depend on order).

    Examples
    --------
    >>> clusters({"a": "p1", "b": "p1", "c": "p2"}) == clusters({"a": "q9", "b": "q9", "c": "q1"})
    True
    >>> clusters({"a": "p1", "b": "p2"}) == clusters({"a": "p1", "b": "p1"})
    False
    """
    groups: dict[str, set[str]] = defaultdict(set)
    for i, profile in assignment.items():
        groups[profile if profile is not None else f"none/{i}"].add(i)
    return frozenset(frozenset(g) for g in groups.values())


@dataclass(frozen=True)
class Expected:
    """What the pipeline should resolve: valid events' anonymous ids with their truth."""

    truth: dict[str, str]  # anonymous_id hash -> customer_id
    identifiable: set[str]  # hashes of anonymous ids seen with a user id or an identify event
    valid: list[SimRecord]  # the valid records, in publishing order


def expected(records: Iterable[SimRecord], secret: str = DEV_HMAC_SECRET, now: float | None = None) -> Expected:
    """Validate records as the worker will; the anonymous ids that must end with a profile."""
    validator, resolver = Validator(), IdentityResolver(secret)
    when = time.time() if now is None else now
    truth: dict[str, str] = {}
    identifiable: set[str] = set()
    valid: list[SimRecord] = []
    for r in records:
        if r.topic.endswith("crm-profiles"):
            if not isinstance(validator.crm_record(r.value), Rejection):
                valid.append(r)
            continue
        result = validator.clickstream(r.value, now=when)
        if not isinstance(result, Event) or r.truth is None:
            continue
        valid.append(r)
        h = resolver.identifier_hash("anonymous_id", normalise_id(result.anonymous_id) or result.anonymous_id)
        truth[h] = r.truth["customer_id"]
        if result.data.get("user_id") or result.type == "identify":
            identifiable.add(h)
    return Expected(truth, identifiable, valid)


def offline_assignment(valid: Iterable[SimRecord], secret: str = DEV_HMAC_SECRET) -> dict[str, str | None]:
    """The assignment the resolver gives resolving every valid record in publishing order, in memory."""
    resolver, state = IdentityResolver(secret), IdentityState.in_memory()
    anons: set[str] = set()
    for r in valid:
        doc = orjson.loads(r.value)
        if "record_id" in doc:
            resolver.resolve_crm(state, doc)
        else:
            resolver.resolve_event(state, doc)
            anons.add(resolver.identifier_hash("anonymous_id", normalise_id(doc["anonymous_id"]) or ""))
    return {h: resolver.profile_of(state, h) for h in anons}


def exact_identifier_components(valid: Iterable[SimRecord], secret: str = DEV_HMAC_SECRET) -> dict[str, str | None]:
    """An upper bound on recall: anonymous ids joined by ANY shared exact identifier, with no guard.

    Union-find over every identifier the resolver hashes (user id, device id, e-mail,
    phone, loyalty id, CRM record id) on every valid record, ignoring limits, blocklist
    and shared devices. Anonymous ids in different components share no identifier at
    all, so no resolver that links on identifiers can put them together.
    """
    resolver = IdentityResolver(secret)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    anons: set[str] = set()
    for r in valid:
        doc = orjson.loads(r.value)
        obs = resolver.observe_crm(doc) if "record_id" in doc else resolver.observe_event(doc)
        hashes = [h for _, h in obs.identifiers] + [h for _, h in obs.junk]
        anons.update(h for t, h in obs.identifiers if t == "anonymous_id")
        for h in hashes[1:]:
            parent[find(h)] = find(hashes[0])
        if hashes:
            find(hashes[0])
    return {h: find(h) for h in anons}


def simulated(
    seed: int, customers: int, end: datetime, max_events: int | None, topics: Topics, truth_dir: Path | None = None
) -> list[SimRecord]:
    """The seeded simulator run for ``topics``; with ``truth_dir``, its ground truth written there too."""
    config = simulator_config(
        seed=seed,
        customers=customers,
        end=end,
        events=max_events,
        topics=SimTopics(clickstream=topics.clickstream, crm_profiles=topics.crm_profiles),
    )
    if truth_dir is None:
        return list(iter_records(config))
    with TruthWriter(truth_dir, config) as truth:
        return list(truth.tee(iter_records(config)))


def read_assignment(redis_client: Any, hashes: Iterable[str]) -> dict[str, str | None]:
    """Each anonymous id hash's profile as the pipeline serves it (``persona:identity:<hash>``)."""
    keys = sorted(hashes)
    pipe = redis_client.pipeline(transaction=False)
    for h in keys:
        pipe.hget(f"persona:identity:{h}", "profile_id")
    return dict(zip(keys, pipe.execute(), strict=True))


def wait_settled(
    read: Callable[[], dict[str, str | None]], timeout: float, quiet: float = 4.0
) -> dict[str, str | None]:
    """Poll ``read`` until every id has a profile and nothing changed for ``quiet`` seconds."""
    return wait_stable(
        read, timeout, quiet, ready=lambda now: all(v is not None for v in now.values()), what="identity"
    )


def run_pipeline(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Start stack and workers, publish the traffic, wait, score. Returns the report."""
    import redis

    with running_pipeline(run_dir, "identity-bench", args.workers, args.partitions) as pipeline:
        records = simulated(args.seed, args.customers, args.end, args.max_events or None, pipeline.settings.topics)
        exp = expected(records)
        started = time.monotonic()
        asyncio.run(produce(records, pipeline.stack.bootstrap, rate=None))
        client = redis.Redis.from_url(pipeline.stack.redis_url, decode_responses=True)
        assignment = wait_settled(lambda: read_assignment(client, exp.truth), timeout=args.timeout)
        elapsed = time.monotonic() - started
    return {
        "command": " ".join(["python -m bench.identity_accuracy", *sys.argv[1:]]),
        "records": len(records),
        **identity_report(exp, assignment),
        "seconds_publish_to_settled": round(elapsed, 1),
        "workers": args.workers,
        "partitions": args.partitions,
    }


def identity_report(exp: Expected, assignment: Mapping[str, str | None]) -> dict[str, Any]:
    """Scores of an assignment over all and over identifiable anonymous ids, with the ceiling and offline check."""
    every, identifiable = pairwise(assignment, exp.truth), pairwise(assignment, exp.truth, exp.identifiable)
    offline = offline_assignment(exp.valid)
    ceiling = pairwise(exact_identifier_components(exp.valid), exp.truth)
    return {
        "valid_records": len(exp.valid),
        "customers_seen": len(set(exp.truth.values())),
        "anonymous_ids": len(exp.truth),
        "identifiable_anonymous_ids": len(exp.identifiable),
        "profiles": len(clusters(assignment)),
        "all": {**asdict(every), "precision": every.precision, "recall": every.recall},
        "identifiable": {**asdict(identifiable), "precision": identifiable.precision, "recall": identifiable.recall},
        "exact_identifier_ceiling": {**asdict(ceiling), "precision": ceiling.precision, "recall": ceiling.recall},
        "same_clusters_as_offline_resolver": clusters(assignment) == clusters(offline),
    }


def main(argv: list[str] | None = None) -> int:
    parser = simulation_parser(__doc__.split("\n\n")[0], customers=200, timeout=300.0)
    return report_main(parser.parse_args(argv), run_pipeline, "identity-bench-")


if __name__ == "__main__":
    sys.exit(main())
