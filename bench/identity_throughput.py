"""CRM records/s through the running pipeline's identity path (ingest-crm, then the identity stage).

Starts the embedded stack and one worker, publishes ``--records`` FEBRL-3 records (real
fuzzy duplicates, as ``crm-profiles`` records; ``bench/febrl.py``) and one end marker
behind them, and times from the first publish until the marker's identity lookup key
(``persona:identity:<hash of its record id>``) is in Redis. Both stages keep the topic's
order (one partition each), so the marker is resolved last. CPU is the worker process's
user + system time over the same window (every stage of that worker, also the profiles
stage taking the CRM trait bands; the broker and Redis are not counted).

``--compare DIR`` runs the same input through the worker code of another checkout
(``PYTHONPATH``, as ``persona bench --compare``), alternating with this one per round.

Usage::

    .venv/bin/python -m bench.identity_throughput [--records 3000] [--rounds 2] [--compare /tmp/base] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis

from app.events.validation import Rejection, Validator
from app.identity.resolver import IdentityResolver
from app.runtime.settings import DEV_HMAC_SECRET, Topics
from app.simulator import SimRecord, produce
from bench.febrl import load
from bench.harness import running_pipeline
from bench.throughput import comparison_variants, cpu_seconds, wait

MARKER = {"schema_version": 1, "record_id": "identity-bench-end-marker", "source": "bench", "traits": {"state": "x"}}


def crm_input(records: int, topic: str) -> list[SimRecord]:
    """``records`` FEBRL-3 records as ``crm-profiles`` records, then the end marker."""
    docs = load("febrl3")[:records]
    return [SimRecord(topic, str(d["record_id"]).encode(), orjson.dumps(d)) for d in [*docs, MARKER]]


def marker_key(secret: str = DEV_HMAC_SECRET) -> str:
    """The Redis lookup key the identity stage writes once it has resolved the marker."""
    valid = Validator().crm_record(orjson.dumps(MARKER))
    assert not isinstance(valid, Rejection), valid
    obs = IdentityResolver(secret).observe_crm(valid.data)
    record_hash = next(h for t, h in obs.identifiers if t == "crm_record_id")
    return f"persona:identity:{record_hash}"


def run_once(run_dir: Path, env: dict[str, str], input_records: list[SimRecord], timeout: float) -> dict[str, float]:
    """One fresh stack and worker: records/s and worker CPU per record for ``input_records``."""
    with running_pipeline(run_dir, "identity-throughput", extra_env=env) as pipeline:
        client = redis.Redis.from_url(pipeline.stack.redis_url)
        key, pid = marker_key(), pipeline.workers[0].proc.pid
        cpu_before, started = cpu_seconds([pid]), time.perf_counter()
        asyncio.run(produce(input_records, pipeline.stack.bootstrap, rate=None))
        wait(lambda: bool(client.exists(key)), timeout, "the end marker's identity", pipeline.workers)
        seconds, cpu = time.perf_counter() - started, cpu_seconds([pid]) - cpu_before
    n = len(input_records)
    return {"records": n, "seconds": seconds, "records_per_second": n / seconds, "cpu_ms_per_record": 1000 * cpu / n}


def run(args: argparse.Namespace) -> dict[str, Any]:
    input_records = crm_input(args.records, Topics().crm_profiles)
    runs: dict[str, list[dict[str, float]]] = {}
    for name, env in comparison_variants(args.compare, args.rounds).items():
        tree = name.split(": ", 1)[1]
        with tempfile.TemporaryDirectory(prefix="identity-throughput-") as tmp:
            result = run_once(Path(tmp), {**env, **dict(args.env)}, input_records, args.timeout)
        print(f"{name}: {result}", file=sys.stderr)
        runs.setdefault(tree, []).append(result)
    return {
        "command": " ".join(["python -m bench.identity_throughput", *sys.argv[1:]]),
        "records": len(input_records),
        "median": {
            tree: {
                k: statistics.median(r[k] for r in results) for k in ("records_per_second", "cpu_ms_per_record")
            }
            for tree, results in runs.items()
        },
        "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=3000, help="FEBRL-3 records to publish (at most 5000)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="other checkouts to run alternately")
    parser.add_argument(
        "--env", type=lambda s: tuple(s.split("=", 1)), action="append", default=[], help="NAME=VALUE for the workers"
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
