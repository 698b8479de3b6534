"""Run the real pipeline for a benchmark: embedded broker and Redis, worker processes, a wait for quiet.

Shared by the benchmarks that measure *through the running pipeline*
(``bench/identity_accuracy.py``, ``bench/pipeline_accuracy.py``, ``bench/identity_throughput.py``,
``bench/lookup_latency.py``), so they start, configure and stop the pipeline the same way.
``bench/throughput.py`` and ``bench/state_scale.py`` start the stack themselves: they run several
scenarios or stores on one stack, each on its own topics and Redis database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from app.embedded.stack import EmbeddedStack, ManagedProcess, embedded_stack, free_port, wait_healthy, worker_argv
from app.runtime.settings import Settings
from app.runtime.topics_admin import ensure_topics_sync
from bench.inputs import recent_end

T = TypeVar("T")


@dataclass
class RunningPipeline:
    """The stack, the workers' settings and environment, their processes and web ports."""

    stack: EmbeddedStack
    settings: Settings
    env: dict[str, str]
    workers: list[ManagedProcess] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


@contextlib.contextmanager
def running_pipeline(
    run_dir: Path, app_id: str, workers: int = 1, partitions: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[RunningPipeline]:
    """Start the embedded stack and ``workers`` worker processes, each healthy; stop everything on exit."""
    with embedded_stack(run_dir / "stack") as stack:
        env = {
            **stack.env,
            "PERSONA_APP_ID": app_id,
            "PERSONA_TOPIC_PARTITIONS": str(partitions),
            "PERSONA_DATA_DIR": str(run_dir / "data"),
            "PERSONA_REDIS_FLUSH_INTERVAL": "0.1",
            **(extra_env or {}),
        }
        settings = Settings.from_env(env)
        ensure_topics_sync(settings)
        running = RunningPipeline(stack, settings, env)
        try:
            for n in range(workers):
                port = free_port()
                worker = ManagedProcess.start(
                    f"worker-{n}", worker_argv(port), run_dir, {**env, "PERSONA_WEB_PORT": str(port)}
                )
                running.workers.append(worker)
                running.ports.append(port)
                wait_healthy(port, 120, [worker])
            yield running
        finally:
            for worker in running.workers:
                worker.stop()


def wait_stable(
    read: Callable[[], T],
    timeout: float,
    quiet: float,
    ready: Callable[[T], bool] = lambda _: True,
    what: str = "the pipeline",
    alive: list[ManagedProcess] | None = None,
) -> T:
    """Poll ``read`` until its value is ``ready`` and has not changed for ``quiet`` seconds.

    Raises :class:`TimeoutError` naming ``what`` at ``timeout``, and :class:`RuntimeError`
    with the log tail if a process of ``alive`` exits meanwhile.

    Examples
    --------
    >>> values = iter([1, 2, 2, 2, 2])
    >>> wait_stable(lambda: next(values), timeout=5, quiet=0.0)
    2
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    since = time.monotonic()
    first = True
    while time.monotonic() < deadline:
        for p in alive or ():
            if not p.running:
                raise RuntimeError(f"{p.name} exited while waiting for {what}:\n{p.tail(40)}")
        now = read()
        if first or now != last:
            last, since, first = now, time.monotonic(), False
        elif ready(now) and time.monotonic() - since >= quiet:
            return now
        time.sleep(0.5)
    raise TimeoutError(f"{what} not settled within {timeout:.0f} s (last seen: {str(last)[:300]})")


def simulation_parser(description: str, customers: int, timeout: float) -> argparse.ArgumentParser:
    """The options every pipeline benchmark shares: the simulated run, the deployment, the report file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--customers", type=int, default=customers)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--end",
        type=lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC),
        default=recent_end(),
        help="end of the simulated period (default: today 00:00 UTC)",
    )
    parser.add_argument("--max-events", type=int, default=0, help="stop the simulator after N records (0: no cap)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=timeout)
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser


Report = dict[str, Any]


def report_main(args: argparse.Namespace, run: Callable[[argparse.Namespace, Path], Report], prefix: str) -> int:
    """Run a benchmark in a temporary directory, print its JSON report and write it to ``--json``."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        report = run(args, Path(tmp))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0
