"""The readiness decision (app/runtime/health.py), the crash record (app/runtime/supervision.py), the stop deadline
(app/runtime/shutdown.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from types import FrameType

import pytest

from app.errors import ConfigError
from app.runtime import health
from app.runtime.health import PartitionProgress, StageFacts, readiness, track
from app.runtime.settings import Settings
from app.runtime.shutdown import EXIT_CODE, ShutdownDeadline, chain_signal_handlers
from app.runtime.supervision import crashes, record_crash

STALL = 60.0


def stage(name: str, running: bool = True, crash: str | None = None, lag: int = 0, stalled: float = 0.0) -> StageFacts:
    return StageFacts(name, running=running, crash=crash, lag=lag, stalled_for=stalled)


def test_every_stage_up_and_no_recovery_is_ready() -> None:
    verdict = readiness(None, [stage("ingest-clickstream"), stage("profiles", lag=500, stalled=59.0)], STALL)
    assert (verdict.ready, verdict.status, verdict.problems) == (True, "ok", ())


def test_each_broken_stage_is_named_with_its_state_and_reason() -> None:
    verdict = readiness(
        "tables profiles",
        [
            stage("ingest-clickstream"),
            stage("profiles", crash="ConfigError: bad rule", lag=3),
            stage("clusters", running=False),
            stage("identity", lag=40, stalled=61.0),
        ],
        STALL,
    )
    assert not verdict.ready and verdict.status == "failing"
    assert [(p.stage, p.state) for p in verdict.problems] == [
        ("tables", "recovering"),
        ("profiles", "crashed"),
        ("clusters", "stopped"),
        ("identity", "stalled"),
    ]
    reasons = {p.stage: p.reason for p in verdict.problems}
    assert "ConfigError: bad rule" in reasons["profiles"]
    assert "40 records" in reasons["identity"] and "61 s" in reasons["identity"]
    assert reasons["tables"] == "recovering tables profiles"


def test_recovery_alone_is_recovering_not_failing() -> None:
    verdict = readiness("tables activity", [stage("ingest-clickstream")], STALL)
    assert (verdict.ready, verdict.status) == (False, "recovering")


def test_a_crash_outranks_a_stall_and_a_stopped_actor() -> None:
    assert health.stage_state(stage("s", running=False, crash="E: x", lag=9, stalled=99.0), STALL) == "crashed"


def test_a_stage_without_lag_is_never_stalled_however_long_it_is_idle() -> None:
    assert health.stage_state(stage("s", lag=0, stalled=3600.0), STALL) == "up"


def test_stall_clock_runs_only_while_the_committed_offset_stands_still_with_lag() -> None:
    progress: dict[str, PartitionProgress] = {}
    timeline = [  # (now, committed, highwater) of one partition
        (0.0, 10, 10),  # caught up
        (5.0, 10, 15),  # records arrive: the clock starts here
        (30.0, 10, 20),  # still at 10
        (65.0, 10, 25),  # 60 s without progress
        (70.0, 12, 25),  # moved: the clock restarts
    ]
    stalls = []
    for now, committed, highwater in timeline:
        progress = track(progress, {"p-0": (committed, highwater)}, now)
        stalls.append(health.longest_stall(progress.values(), now))
    assert stalls == [0.0, 0.0, 25.0, 60.0, 0.0]


def test_the_longest_stalled_partition_counts_and_revoked_partitions_are_forgotten() -> None:
    progress = track({}, {"a": (0, 5), "b": (0, 5)}, 0.0)
    progress = track(progress, {"a": (0, 5), "b": (3, 5)}, 40.0)
    assert health.longest_stall(progress.values(), 40.0) == 40.0
    assert set(track(progress, {"b": (3, 5)}, 41.0)) == {"b"}


def test_recorded_crashes_name_the_exception_and_skip_rebalance_cancellations() -> None:
    try:
        assert not record_crash("unit-stage", asyncio.CancelledError())
        assert "unit-stage" not in crashes
        assert record_crash("unit-stage", ValueError("category 'Home & Garden'"))
        assert crashes["unit-stage"] == "ValueError: category 'Home & Garden'"
    finally:
        crashes.pop("unit-stage", None)


def test_stall_and_grace_settings_must_be_positive() -> None:
    settings = Settings.from_env({"PERSONA_STALL_SECONDS": "5", "PERSONA_SHUTDOWN_GRACE_SECONDS": "3"})
    assert (settings.stall_seconds, settings.shutdown_grace_seconds) == (5.0, 3.0)
    for name in ("PERSONA_STALL_SECONDS", "PERSONA_SHUTDOWN_GRACE_SECONDS"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "0"})


def test_deadline_logs_what_is_pending_once_and_exits_with_its_code(caplog: pytest.LogCaptureFixture) -> None:
    exited: list[int] = []
    done = threading.Event()

    def exit(code: int) -> None:
        exited.append(code)
        done.set()

    deadline = ShutdownDeadline(0.05, lambda: "2 unacknowledged records (pe[0] offsets 0..1)", exit)
    with caplog.at_level(logging.ERROR, logger="app.runtime.shutdown"):
        deadline.arm()
        deadline.arm()  # a second signal keeps the first deadline
        assert done.wait(5)
    assert exited == [EXIT_CODE]
    (line,) = [r.getMessage() for r in caplog.records if "did not stop" in r.getMessage()]
    assert "within 0.05 s" in line and "pe[0] offsets 0..1" in line and f"code {EXIT_CODE}" in line


def test_deadline_still_exits_when_describing_the_pending_work_fails() -> None:
    exited: list[int] = []

    def broken() -> str:
        raise RuntimeError("set changed size during iteration")

    deadline = ShutdownDeadline(0.0, broken, exited.append)
    deadline.expire()
    assert exited == [EXIT_CODE]


def test_a_signal_arms_the_deadline_and_still_reaches_the_handler_before_it() -> None:
    sig = signal.SIGUSR1
    seen: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    class Recorder(ShutdownDeadline):
        def arm(self) -> None:
            seen.append(-1)

    original = signal.signal(sig, previous)
    try:
        chain_signal_handlers(Recorder(1.0, str), (sig,))
        os.kill(os.getpid(), sig)
        assert seen == [-1, sig]
    finally:
        signal.signal(sig, original)
