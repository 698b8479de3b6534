"""Health tells the truth: a crashed or stalled stage makes the worker unready, and SIGTERM still stops it.

The stages are broken with the test-only worker of tests/integration/crashing_worker.py (two
extra agents that crash or wait forever on demand), so no backdoor exists in the product.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.embedded.stack import ManagedProcess, free_port
from tests.integration.conftest import Pipeline, get, wait_for
from tests.integration.crashing_worker import CRASH_STAGE, STALL_STAGE, stage_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 4.0


def start_crashing_worker(pipeline: Pipeline) -> tuple[ManagedProcess, int]:
    port = free_port()
    env = {
        **pipeline.env,
        "PERSONA_WEB_PORT": str(port),
        "PERSONA_STALL_SECONDS": "2",
        "PERSONA_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "tests.integration.crashing_worker", "worker", "--web-port", str(port)]
    worker = ManagedProcess.start(f"{pipeline.app_id}-crashing-worker", argv, pipeline.run_dir, env)
    pipeline.workers.append((worker, port))  # stopped by the fixture whatever happens
    pipeline.wait_ready(worker, port)
    return worker, port


def test_crashed_and_stalled_stages_make_the_worker_unready_and_sigterm_still_stops_it(pipeline: Pipeline) -> None:
    worker, port = start_crashing_worker(pipeline)
    status, body = get(port, "/health/ready")
    assert status == 200 and body["stages"][CRASH_STAGE] == "up" and body["stages"]["profiles"] == "up", body

    pipeline.produce(stage_topic(pipeline.app_id, CRASH_STAGE), [(b"k", b"crash")])
    pipeline.produce(stage_topic(pipeline.app_id, STALL_STAGE), [(b"k", b"stall"), (b"k", b"after")])

    def states() -> dict[str, str]:
        return {p["stage"]: p["state"] for p in get(port, "/health/ready")[1].get("problems", [])}

    wanted = {CRASH_STAGE: "crashed", STALL_STAGE: "stalled"}
    wait_for(lambda: states() == wanted, 30, lambda: f"problems {states()}, wanted {wanted}\n{worker.tail(40)}")
    status, body = get(port, "/health/ready")
    assert status == 503 and body["status"] == "failing" and not body["ready"]
    reasons = {p["stage"]: p["reason"] for p in body["problems"]}
    assert "RuntimeError: crash requested by the test" in reasons[CRASH_STAGE]
    assert "records wait on its input" in reasons[STALL_STAGE]
    assert {stage for stage, state in body["stages"].items() if state != "up"} == set(wanted)
    alias_status, alias = get(port, "/health")  # the old path answers as /health/ready does
    assert (alias_status, alias["stages"]) == (503, body["stages"])
    assert get(port, "/health/live")[0] == 200  # the process itself is fine

    assert pipeline.metric(port, "persona_agent_up", agent=CRASH_STAGE) == 0
    assert pipeline.metric(port, "persona_agent_up", agent="profiles") == 1
    assert pipeline.metric(port, "persona_agent_crashes_total", agent=CRASH_STAGE) == 1
    wait_for(lambda: pipeline.metric(port, "persona_stage_stalled", stage=STALL_STAGE) == 1, 15,
             lambda: "persona_stage_stalled never turned 1")
    assert pipeline.metric(port, "persona_stage_lag_records", stage=STALL_STAGE) >= 1
    assert pipeline.metric(port, "persona_stage_stalled", stage="profiles") == 0

    # The stalled batch is never acknowledged: Faust's own stop would wait for it forever.
    began = time.monotonic()
    worker.signal(signal.SIGTERM)
    try:
        code = worker.proc.wait(GRACE_SECONDS + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running {GRACE_SECONDS + 10} s after SIGTERM\n{worker.tail(20)}")
    took = time.monotonic() - began
    assert code == 1 and took < GRACE_SECONDS + 3, (code, took)
    (line,) = [ln for ln in worker.tail(400).splitlines() if "did not stop within" in ln]
    assert f"{stage_topic(pipeline.app_id, STALL_STAGE)}[0]" in line, line
