"""Faults under simulator load, then every table and Redis key against the oracle (tests/reliability/oracle.py).

The simulator sends traffic to a 2-partition deployment with its own redis-server while a seeded
schedule SIGKILLs the worker at random moments (``RELIABILITY_KILLS``, default 10), SIGTERMs it
(2), lets a second worker join and leave, stops Redis for 30 s (SIGSTOP: it hangs, as a stalled or
partitioned Redis does) and restarts Redis empty. Then the simulator stops, the last worker
settles, the tables are read back from their changelogs and compared with an uninterrupted fold
of the same input, and Redis with what the tables serve. ``RELIABILITY_FAULT_CONTROL_SECONDS=N``
runs the same load for N seconds without any fault: the control run.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from app.embedded.stack import EmbeddedStack, ManagedProcess, start_redis
from app.runtime import rebuild
from app.runtime.settings import Settings
from tests.integration.conftest import Pipeline, expire_killed_worker
from tests.reliability import oracle
from tests.reliability.report import LogWatch, size, stage_of, write_results

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(7200)]

REDIS_DOWN_SECONDS = 30


class FaultRun:
    """The deployment under test: workers, its own Redis, the simulator, and a log of what was done."""

    def __init__(self, stack: EmbeddedStack, run_dir: Path, seed: int) -> None:
        self.run_dir = run_dir
        self.redis_proc, url = start_redis(run_dir / "redis")
        self.redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.pipeline = Pipeline(stack, run_dir, partitions=2)
        self.pipeline.env_overrides["REDIS_URL"] = url
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.rng = random.Random(seed)
        self.events: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.started_at = time.time()  # epoch of t = 0: the lost events' broker timestamps compare with it
        self.worker, self.port = self.pipeline.start_worker()
        self.watches = [LogWatch(self.worker)]

    def note(self, what: str, **extra: Any) -> None:
        self.events.append({"t": round(time.monotonic() - self.started, 1), "what": what, **extra})

    def pause(self, low: float = 2.0, high: float = 12.0) -> None:
        time.sleep(self.rng.uniform(low, high))

    def restart(self) -> None:
        self.worker, self.port = self.pipeline.start_worker()
        self.watches.append(LogWatch(self.worker))

    def kill(self) -> None:
        self.worker.kill()
        expire_killed_worker(self.pipeline, self.worker)  # what session expiry does on Apache Kafka
        self.note("SIGKILL")
        self.restart()

    def terminate(self) -> None:
        began = time.monotonic()
        code = self.worker.stop()
        self.note("SIGTERM", exit_code=code, seconds=round(time.monotonic() - began, 1))
        self.restart()

    def join_and_leave(self) -> None:
        second, _ = self.pipeline.start_worker()
        self.watches.append(LogWatch(second))
        self.note("second worker joined")
        self.pause(10, 20)
        code = second.stop()
        self.note("second worker left (SIGTERM)", exit_code=code)

    def redis_down(self) -> None:
        self.redis_proc.signal(signal.SIGSTOP)
        self.note("Redis stopped (SIGSTOP)")
        time.sleep(REDIS_DOWN_SECONDS)
        self.redis_proc.signal(signal.SIGCONT)
        self.note("Redis back (SIGCONT)")

    def redis_restarted_empty(self) -> None:
        self.redis_proc.stop()
        self.redis_proc, _ = start_redis(self.run_dir / "redis", self.redis_port)
        self.note("Redis restarted empty", keys_now=self.redis.dbsize())

    def settle(self, quiet: float = 15.0, timeout: float = 600.0) -> None:
        """Wait until the worker has applied everything: its counters unchanged for ``quiet`` seconds."""
        names = ("persona_events_processed_total", "persona_duplicates_total", "persona_dead_letters_total")
        last, since = None, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                now = tuple(self.pipeline.metric(self.port, name) for name in names)
            except OSError:
                now = None
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(1)

    def stop(self) -> None:
        self.pipeline.stop()
        self.redis.close()
        self.redis_proc.stop()


def simulator(run: FaultRun, seed: int, rate: int) -> ManagedProcess:
    topics = run.pipeline.topics
    argv = [sys.executable, "-m", "app.cli", "simulate", "--seed", str(seed), "--customers", "2000", "--days", "7",
            "--rate", str(rate), "--duration", "7200", "--bootstrap", run.pipeline.stack.bootstrap,
            "--clickstream-topic", topics.clickstream, "--crm-topic", topics.crm_profiles]
    return ManagedProcess.start("simulator", argv, run.run_dir, run.pipeline.env)


def test_kills_terminations_rebalances_and_redis_outages_lose_nothing_and_apply_nothing_twice(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    kills, seed, rate = size("KILLS", 10), size("SEED", 19), size("FAULT_RATE", 150)
    control_seconds = size("FAULT_CONTROL_SECONDS", 0)
    run = FaultRun(stack, tmp_path, seed)
    sim = simulator(run, seed, rate)
    try:
        faults = ["kill"] * kills + ["terminate"] * 2 + ["join_and_leave", "redis_down", "redis_restarted_empty"]
        run.rng.shuffle(faults)
        if control_seconds:  # the same load without faults: what the oracle comparison gives undisturbed
            faults = []
            time.sleep(control_seconds)
        for fault in faults:
            run.pause()
            getattr(run, fault)()
        run.pause()
        sim.stop()
        run.note("simulator stopped", exit_code=sim.proc.returncode)
        run.settle()
        run.note("settled")
        figures = check_against_oracle(run)
    finally:
        sim.stop()
        problems = [p for watch in run.watches for p in watch.problems()]
        run.stop()
    figures["faults"] = run.events
    figures["faults_started_at"] = run.started_at
    figures["kills"] = kills
    figures["simulator_rate"] = rate
    figures["control_without_faults"] = bool(control_seconds)
    figures["logged_tracebacks"] = len(problems)
    figures["traceback_stages"] = sorted({stage_of(p) for p in problems})
    figures["first_traceback"] = problems[0][-3000:] if problems else None
    write_results("faults", figures)
    assert (figures["activity"]["lost_events"], figures["activity"]["applied_twice"]) == (0, 0)
    assert figures["activity"]["differing_ids"] == 0 and figures["activity"]["missing_ids"] == 0
    assert figures["profiles"]["differing_profiles"] == 0
    assert (figures["redis"]["missing"], figures["redis"]["differing"]) == (0, 0)


def check_against_oracle(run: FaultRun) -> dict[str, Any]:
    settings = Settings.from_env(run.pipeline.env)
    bootstrap = run.pipeline.stack.bootstrap
    tables = {table: rebuild.last_values(iter((r.key, r.value) for r in oracle.read_topic_sync(
        bootstrap, rebuild.changelog_topic(settings, table)))) for table in rebuild.TABLES}
    clickstream = oracle.read_topic_sync(bootstrap, run.pipeline.topics.clickstream)
    want = oracle.activity_oracle(clickstream, time.time())
    return {
        "clickstream_records": len(clickstream),
        "activity": oracle.compare_activity(tables["activity"], want),
        "lost_event_records": oracle.lost_event_records(clickstream, tables["activity"], want),
        "profiles": oracle.compare_profiles(want, tables["identity_alias"], tables["profiles"]),
        "redis": oracle.compare_redis(rebuild.serving_keys(tables, time.time()), run.redis),
    }
