"""How often a worker restarted after a SIGKILL stalls on Apache Kafka (or Tansu).

Each trial is ``test_worker_killed_and_restarted_keeps_the_table_exactly``: 20 visitors x 25
events, a worker, SIGKILL, the dead member removed from the group, 5 more events each, a new
worker. It counts the trials in which the new worker has not applied them within
``--wait`` seconds and prints that worker's ``/health`` and a py-spy dump of it.

Run: ``.venv/bin/python -m bench.restart_stall_probe --broker kafka --trials 5``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.embedded.stack import BROKERS, EmbeddedStack
from tests.integration.conftest import Pipeline, expire_killed_worker, get
from tests.integration.test_recovery import all_counts, batch


def settled_within(pipeline: Pipeline, per_id: int, seconds: float) -> float | None:
    """Seconds until every visitor's count is ``per_id``; ``None`` if not within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if set(all_counts(pipeline).values()) == {per_id}:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def trial(stack: EmbeddedStack, run_dir: Path, wait: float) -> float | None:
    pipeline = Pipeline(stack, run_dir)
    try:
        pipeline.produce(pipeline.topics.clickstream, batch("first", 25))
        first, _ = pipeline.start_worker()
        settled_within(pipeline, 25, 60)
        first.kill()
        expire_killed_worker(pipeline, first)
        pipeline.redis.flushdb()
        pipeline.produce(pipeline.topics.clickstream, batch("second", 5))
        second, port = pipeline.start_worker()
        took = settled_within(pipeline, 30, wait)
        if took is None:
            print(json.dumps(get(port, "/health")[1], indent=1))
            dump = [str(Path(sys.executable).with_name("py-spy")), "dump", "--pid", str(second.proc.pid)]
            print(subprocess.run(dump, capture_output=True, text=True, check=False).stdout)
        return took
    finally:
        pipeline.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", choices=BROKERS, default="kafka")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--wait", type=float, default=120.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="restart-stall-"))
    stack = EmbeddedStack(root / "stack", args.broker).start()
    stalled = 0
    try:
        for n in range(args.trials):
            took = trial(stack, root / f"trial-{n}", args.wait)
            stalled += took is None
            print(f"trial {n}: " + (f"applied in {took:.1f} s" if took is not None else f"STALLED {args.wait:g} s"),
                  flush=True)
    finally:
        stack.stop()
    print(f"{args.broker}: {stalled} of {args.trials} restarted workers stalled")


if __name__ == "__main__":
    main()
