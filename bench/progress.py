"""Progress of a benchmark consumer process (bare Faust, Quix), written to a JSON status file.

The consumer calls :meth:`Progress.seen` once per record with the record's Kafka
timestamp. The first ``total`` records are the pre-loaded input (throughput: the
wall-clock and CPU time from the first to the last of them); the next ``probe``
records are the latency probe (now minus the record's produce timestamp, in this
process, when the record has been handled); the harness writes ``probe`` to the file
named by ``BENCH_PROBE_FILE`` before it produces them. The status file is replaced atomically,
at most every 0.2 s and at both milestones, so the harness can poll it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.stats import latency_summary

WRITE_EVERY_S = 0.2


class Progress:
    def __init__(self, status_path: Path, total: int, probe_file: Path | None = None) -> None:
        self.path = status_path
        self.total = total
        self.probe_file = probe_file
        self.probe = 0
        self.count = 0
        self.first_at: float | None = None
        self.first_cpu: float | None = None
        self.done_at: float | None = None
        self.done_cpu: float | None = None
        self.latencies: list[float] = []
        self.written_at = 0.0
        self.write()

    @classmethod
    def from_env(cls) -> Progress:
        probe_file = os.environ.get("BENCH_PROBE_FILE")
        return cls(
            Path(os.environ["BENCH_STATUS"]), int(os.environ["BENCH_TOTAL"]), Path(probe_file) if probe_file else None
        )

    def seen(self, timestamp_s: float) -> None:
        now = time.time()
        self.count += 1
        count = self.count
        if count == 1:
            self.first_at, self.first_cpu = now, time.process_time()
        if count == self.total:
            self.done_at, self.done_cpu = now, time.process_time()
            self.write()
        elif count > self.total:
            self.latencies.append(now - timestamp_s)
            if count == self.total + 1:
                self.probe = self.read_probe()
            if count == self.total + self.probe:
                self.write()
        if now - self.written_at >= WRITE_EVERY_S:
            self.write()

    def read_probe(self) -> int:
        try:
            return int(self.probe_file.read_text()) if self.probe_file else 0
        except (OSError, ValueError):
            return 0

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "pid": os.getpid(),
            "count": self.count,
            "first_at": self.first_at,
            "done_at": self.done_at,
            "cpu_seconds": None if self.done_cpu is None or self.first_cpu is None else self.done_cpu - self.first_cpu,
        }
        if self.probe and self.count >= self.total + self.probe:
            status["latency"] = latency_summary(self.latencies)
        return status

    def write(self) -> None:
        self.written_at = time.time()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status()))
        tmp.replace(self.path)
