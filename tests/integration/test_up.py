"""`persona up` (what `make run` runs): starts everything, processes traffic, stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; it only waits for its parent to reap it.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def started_pids(run_dir: Path) -> dict[str, int]:
    lines = (run_dir / "pids").read_text().split("\n")
    return {name: int(pid) for name, pid in (line.split() for line in lines if line)}


@pytest.mark.on_both_brokers
def test_up_with_a_duration_processes_traffic_prints_a_summary_and_leaves_no_process(
    tmp_path: Path, broker: str
) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "up",
            "--duration",
            "40",
            "--rate",
            "400",
            "--customers",
            "200",
            "--run-dir",
            str(run_dir),
            "--broker",
            broker,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "summary after" in out and "all processes stopped." in out
    assert "API key (admin scope, this run only): embedded." in out, "persona up must print its API key"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["processed"] > 1000
    assert sum(summary["dead_letters"].values()) > 0, "the simulator's malformed share must show up as dead letters"
    assert summary["table_keys"]["activity"] > 0
    assert summary["table_keys"]["profiles"] > 0
    assert summary["sessions_closed"] > 0
    assert summary["segment_changes"].get("entered", 0) > 0
    pids = started_pids(run_dir)
    assert {"kafka" if broker == "kafka" else "broker", "redis", "worker-1", "simulator"} <= set(pids)
    assert not [name for name, pid in pids.items() if alive(pid)]


def test_up_stops_every_process_on_ctrl_c(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--rate", "200", "--customers", "50", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "pids").exists():
        time.sleep(0.5)
    while time.monotonic() < deadline and "simulator" not in (run_dir / "pids").read_text():
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out[-3000:]
    assert "all processes stopped." in out
    assert not [name for name, pid in started_pids(run_dir).items() if alive(pid)]
