"""Sizes, figures and worker observation shared by the reliability tests.

Sizes come from environment variables so a quick run (``RELIABILITY_FUZZ_INPUTS=2000
RELIABILITY_KILLS=2 RELIABILITY_SOAK_SECONDS=60``) exercises the same code as the full one
(the defaults, what ``make test-reliability`` runs). Each test writes its figures to
``bench/results/reliability-<UTC timestamp>.json`` and prints them.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.embedded.stack import ManagedProcess

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
#: Lines of a worker log that mean some code raised where it should not have.
PROBLEM = re.compile(r"Traceback|[Cc]rashed|Exception in callback|Task exception was never retrieved")


def size(name: str, default: int) -> int:
    """The integer setting ``RELIABILITY_<NAME>`` of the environment, else ``default``.

    >>> size("NO_SUCH_SIZE", 7)
    7
    """
    return int(os.environ.get(f"RELIABILITY_{name}", default))


def write_results(test: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` (with the test's name, the sizes and the commit) as JSON; print and return the path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"reliability-{stamp}.json"
    while path.exists():  # two tests finishing in one second
        time.sleep(1)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"reliability-{stamp}.json"
    sizes = {k: v for k, v in os.environ.items() if k.startswith("RELIABILITY_")}
    doc = {"test": test, "finished_at": stamp, "sizes_from_env": sizes, **figures}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    print(f"\n{test}: {path}\n{json.dumps(doc, indent=1, sort_keys=True, default=str)}")
    return path


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (0 if it is gone).

    >>> rss_kib(os.getpid()) > 0
    True
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else 0


@dataclass
class LogWatch:
    """Reads a worker's log from where it last stopped and returns the problem lines with context."""

    worker: ManagedProcess
    position: int = 0

    def crashed(self) -> bool:
        """Whether an agent crashed since :meth:`problems` last read the log (Faust's supervisor may restart
        it, but a restarted agent does not get past the record it crashed on)."""
        try:
            with self.worker.log_path.open("rb") as log:
                log.seek(self.position)
                return b"Crashed reason=" in log.read()
        except OSError:
            return False

    def problems(self, context: int = 40) -> list[str]:
        try:
            with self.worker.log_path.open("rb") as log:
                log.seek(self.position)
                chunk = log.read()
        except OSError:
            return []
        self.position += len(chunk)
        return problem_records(chunk.decode(errors="replace").splitlines(), context)


def problem_records(lines: list[str], context: int = 40) -> list[str]:
    """Each log record with a problem, with its traceback (up to ``context`` lines, to the next record).

    >>> log = ["[2026] [1] [ERROR] Agent crashed", "Traceback (most recent call last):", "  File x", "E: y",
    ...        "[2026] [1] [INFO] fine", "[2026] [1] [ERROR] Exception in callback", "more"]
    >>> [p.splitlines()[0] for p in problem_records(log)]
    ['[2026] [1] [ERROR] Agent crashed', '[2026] [1] [ERROR] Exception in callback']
    """
    out, i = [], 0
    while i < len(lines):
        if not PROBLEM.search(lines[i]):
            i += 1
            continue
        end = i + 1
        while end < min(len(lines), i + context) and not lines[end].startswith("[20"):
            end += 1
        out.append("\n".join(lines[i:end]))
        i = end
    return out


def stage_of(problem: str) -> str:
    r"""The stage a problem's log lines name: the crashed agent, else the innermost project frame's module.

    >>> stage_of("[ERROR] [^----Agent*: agents.ingest.ingest_clickstream]: Crashed reason=TypeError()")
    'ingest.ingest_clickstream'
    >>> stage_of('File "/v/site-packages/faust/agents/agent.py", line 1\n  File "/w/app/runtime/web.py", line 89, in x')
    'runtime/web.py'
    >>> stage_of("Traceback (most recent call last):")
    'unknown'
    """
    crashed = re.search(r"Agent\*: agents\.(\w+\.\w+)", problem)
    if crashed:
        return crashed.group(1)
    frames = [f for f in re.findall(r'File "([^"]+)"', problem) if "site-packages" not in f]
    return "/".join(Path(frames[-1]).parts[-2:]) if frames else "unknown"
