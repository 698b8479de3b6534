"""Where the event loop stalls: busy stretches of a worker's main thread, from a py-spy timeline.

End-to-end latency has a tail when the worker's one event loop is busy for long stretches:
a record that arrives meanwhile waits for the loop. An aggregate profile says what costs CPU,
not what holds the loop at once. This reads a py-spy speedscope profile recorded with
``--idle`` (so waiting in ``select`` is sampled too, and samples are in time order), cuts the
main thread's timeline into busy stretches (from one wait in the selector to the next), and
says for the longest which callbacks (the first frame the loop's ``Handle._run`` calls) and
which of our own functions (``agents/``, ``tables/``, ``app/``) the samples were in.

Usage (``persona bench --probe-profile`` records one during the latency probe)::

    .venv/bin/python -m bench.loop_stalls bench/results/<stamp>-<scenario>-probe.speedscope.json [--top 10]

Examples
--------
>>> frames = [{"name": n, "file": f} for n, f in [
...     ("BaseEventLoop._run_once", "asyncio/base_events.py"), ("EpollSelector.select", "selectors.py"),
...     ("Handle._run", "asyncio/events.py"), ("apply_batch", "agents/profiles.py"),
...     ("fold", "app/profiles/fold.py")]]
>>> idle, work = [0, 1], [0, 2, 3, 4]
>>> runs = busy_runs(frames, [idle, work, work, work, idle, work, idle], [0.01] * 7)
>>> [(round(r.seconds, 2), dict(r.callbacks), dict(r.own)) for r in runs][0]
(0.03, {'apply_batch (agents/profiles.py)': 3}, {'fold (profiles/fold.py)': 3})
>>> len(runs)
2
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OWN_CODE = re.compile(r"(^|/)(agents|tables|app)/([^/]+/)?[^/]+\.py$")  # one package level: app/profiles/fold.py
IDLE_LEAVES = {"EpollSelector.select", "SelectSelector.select", "KqueueSelector.select", "PollSelector.select"}


@dataclass
class BusyRun:
    """One stretch of the main thread between two waits in the selector."""

    start_s: float
    seconds: float = 0.0
    #: callback the loop ran (first frame under ``Handle._run``) -> samples
    callbacks: Counter[str] = field(default_factory=Counter)
    #: innermost frame of our own code (agents/, tables/, app/) -> samples
    own: Counter[str] = field(default_factory=Counter)


def label(frame: dict[str, Any]) -> str:
    path = str(frame.get("file") or "")
    short = "/".join(path.split("/")[-2:]) if path else "?"
    return f"{frame['name']} ({short})"


def busy_runs(frames: Sequence[dict[str, Any]], samples: Sequence[Sequence[int]],
              weights: Sequence[float]) -> list[BusyRun]:
    """Cut a time-ordered sample list (stacks root first, as speedscope writes them) into busy stretches."""
    runs: list[BusyRun] = []
    current: BusyRun | None = None
    clock = 0.0
    for stack, weight in zip(samples, weights, strict=True):
        names = [frames[i]["name"] for i in stack]
        if names and names[-1] in IDLE_LEAVES:
            current = None
        else:
            if current is None:
                current = BusyRun(start_s=clock)
                runs.append(current)
            current.seconds += weight
            current.callbacks[callback_of(frames, stack)] += 1
            own = next((label(frames[i]) for i in reversed(stack[loop_depth(frames, stack):])
                        if OWN_CODE.search(str(frames[i].get("file")))), "(no own frame)")
            current.own[own] += 1
        clock += weight
    return runs


def loop_depth(frames: Sequence[dict[str, Any]], stack: Sequence[int]) -> int:
    """Where the event loop's frames end in a stack: what is above them (the worker's start) ran no callback."""
    names = [frames[i]["name"] for i in stack]
    return names.index("BaseEventLoop._run_once") + 1 if "BaseEventLoop._run_once" in names else 0


def callback_of(frames: Sequence[dict[str, Any]], stack: Sequence[int]) -> str:
    """The first frame under the loop's ``Handle._run`` that is not asyncio's own task machinery."""
    names = [frames[i]["name"] for i in stack]
    try:
        start = names.index("Handle._run") + 1
    except ValueError:
        return "(outside a loop callback)"
    for i in stack[start:]:
        frame = frames[i]
        if "/asyncio/" not in str(frame.get("file")):
            return label(frame)
    return label(frames[stack[-1]])


def shares(counts: Counter[str], top: int = 3) -> list[tuple[str, float]]:
    total = sum(counts.values()) or 1
    return [(name, round(n / total, 2)) for name, n in counts.most_common(top)]


def main_thread(document: dict[str, Any]) -> dict[str, Any]:
    profiles = document["profiles"]
    named = [p for p in profiles if "MainThread" in p.get("name", "")]
    return named[0] if named else max(profiles, key=lambda p: len(p["samples"]))


def report(path: Path, top: int = 10, min_ms: float = 100.0) -> dict[str, Any]:
    document = json.loads(path.read_text())
    frames = document["shared"]["frames"]
    profile = main_thread(document)
    runs = busy_runs(frames, profile["samples"], profile["weights"])
    total = sum(profile["weights"]) or 1.0
    busy = sum(r.seconds for r in runs)
    long_runs = sorted((r for r in runs if r.seconds * 1000 >= min_ms), key=lambda r: -r.seconds)
    return {
        "file": str(path),
        "sampled_s": round(total, 2),
        "busy_share": round(busy / total, 3),
        "busy_runs": len(runs),
        f"runs_over_{min_ms:g}_ms": len(long_runs),
        "longest": [
            {
                "start_s": round(r.start_s, 2),
                "ms": round(r.seconds * 1000),
                "callbacks": shares(r.callbacks),
                "own": shares(r.own),
            }
            for r in long_runs[:top]
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("speedscope", type=Path)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--min-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    summary = report(args.speedscope, args.top, args.min_ms)
    long_runs = summary[f"runs_over_{args.min_ms:g}_ms"]
    print(f"{summary['file']}: {summary['sampled_s']} s sampled, main thread busy {summary['busy_share']:.0%}, "
          f"{summary['busy_runs']} busy stretches, {long_runs} of {args.min_ms:g} ms or more")
    for run in summary["longest"]:
        print(f"  at {run['start_s']:>7.2f} s: {run['ms']:>5} ms")
        for name, share in run["callbacks"]:
            print(f"      callback {share:>4.0%} {name}")
        for name, share in run["own"]:
            print(f"      own code {share:>4.0%} {name}")


if __name__ == "__main__":
    main()
