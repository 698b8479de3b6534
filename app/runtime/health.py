"""Readiness of a worker, decided from facts about its stages: the pure core of ``/health/ready``.

The imperative shell (:mod:`app.runtime.health_probe`) gathers the facts from the running Faust app:
whether each agent (stage) has a running actor, whether its code has raised since the worker
started, and the committed and end offsets of the input partitions it consumes. This module
turns them into a verdict: ready, or not ready with the stage and the reason for each problem.

A stage is *stalled* when one of its input partitions has lag (end offset beyond the committed
offset) and its committed offset has not moved for ``stall_seconds``. :func:`track` keeps, per
partition, when the committed offset last moved (or the partition was last caught up), from one
observation to the next.

Examples
--------
>>> ok = StageFacts("ingest-clickstream", running=True, crash=None, lag=0, stalled_for=0.0)
>>> readiness(None, [ok], 60.0).ready
True
>>> dead = StageFacts("profiles", running=True, crash="RuntimeError: boom", lag=3, stalled_for=5.0)
>>> verdict = readiness(None, [ok, dead], 60.0)
>>> verdict.ready, verdict.status, [(p.stage, p.state) for p in verdict.problems]
(False, 'failing', [('profiles', 'crashed')])
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

#: Stage name of the problem reported while tables recover (it is no agent's name).
RECOVERY_STAGE = "tables"


@dataclass(frozen=True)
class PartitionProgress:
    """What is remembered of one input partition between two observations.

    ``committed`` is the consumer's committed offset (the next record to read; ``None`` before
    the group ever committed), ``highwater`` the partition's end offset as last fetched (``None``
    before the first fetch), ``since`` when the committed offset last moved or the partition was
    last caught up (monotonic seconds).
    """

    committed: int | None
    highwater: int | None
    since: float

    @property
    def lag(self) -> int:
        """Records between the committed offset and the end (0 when the end is not known yet).

        >>> PartitionProgress(7, 10, 0.0).lag, PartitionProgress(None, 4, 0.0).lag
        (3, 4)
        >>> PartitionProgress(12, 10, 0.0).lag, PartitionProgress(3, None, 0.0).lag
        (0, 0)
        """
        if self.highwater is None:
            return 0
        return max(0, self.highwater - (self.committed or 0))


def track(
    previous: Mapping[K, PartitionProgress], observed: Mapping[K, tuple[int | None, int | None]], now: float
) -> dict[K, PartitionProgress]:
    """The progress of each observed partition: ``observed`` maps it to ``(committed, highwater)``.

    ``since`` is kept while the committed offset stands still with lag (at this observation and
    the one before); otherwise (the offset moved, the partition is new, it has no lag now or had
    none before) it restarts at ``now``. Partitions no longer observed (revoked) are dropped.

    >>> p = track({}, {"a": (5, 9)}, now=10.0)
    >>> p["a"].since, p["a"].lag
    (10.0, 4)
    >>> track(p, {"a": (5, 12)}, now=40.0)["a"].since   # no progress: still 10
    10.0
    >>> track(p, {"a": (6, 12)}, now=40.0)["a"].since   # moved
    40.0
    >>> track(p, {"a": (9, 9)}, now=40.0)["a"].since    # caught up
    40.0
    >>> idle = track({}, {"a": (9, 9)}, now=0.0)
    >>> track(idle, {"a": (9, 12)}, now=40.0)["a"].since  # lag appeared: the clock starts now
    40.0
    >>> track(p, {}, now=40.0)
    {}
    """
    out: dict[K, PartitionProgress] = {}
    for key, (committed, highwater) in observed.items():
        prior = previous.get(key)
        fresh = PartitionProgress(committed, highwater, now)
        kept = prior is not None and prior.committed == committed and prior.lag > 0 and fresh.lag > 0
        out[key] = PartitionProgress(committed, highwater, prior.since) if kept and prior else fresh
    return out


def longest_stall(progress: Iterable[PartitionProgress], now: float) -> float:
    """Longest time one of these partitions has had lag without its committed offset moving.

    >>> longest_stall([PartitionProgress(5, 9, 10.0), PartitionProgress(3, 3, 0.0)], now=70.0)
    60.0
    >>> longest_stall([PartitionProgress(3, 3, 0.0)], now=70.0), longest_stall([], now=70.0)
    (0.0, 0.0)
    """
    return max((now - p.since for p in progress if p.lag > 0), default=0.0)


def crash_description(reason: BaseException | None) -> str | None:
    """How a stage's crash is reported; ``None`` for no crash and for a cancellation.

    Faust cancels an agent's actor on a rebalance and restarts it through the same path as a
    crash; that is not the stage's code failing.

    >>> crash_description(ValueError("bad category"))
    'ValueError: bad category'
    >>> crash_description(asyncio.CancelledError()) is None, crash_description(None) is None
    (True, True)
    """
    if reason is None or isinstance(reason, asyncio.CancelledError):
        return None
    return f"{type(reason).__name__}: {reason}"


@dataclass(frozen=True)
class StageFacts:
    """What the shell knows of one stage (one Faust agent) at one moment.

    ``running``: an actor of the agent is running; ``crash``: the last exception its code raised
    since the worker started (:func:`crash_description`), or ``None``; ``lag``: records behind on
    the input partitions this worker holds; ``stalled_for``: :func:`longest_stall` of them.
    """

    stage: str
    running: bool
    crash: str | None
    lag: int
    stalled_for: float


@dataclass(frozen=True)
class Problem:
    """One reason a worker is not ready: the stage, its state and a sentence for operators."""

    stage: str
    state: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "state": self.state, "reason": self.reason}


def stage_state(facts: StageFacts, stall_seconds: float) -> str:
    """``up``, ``crashed``, ``stopped`` or ``stalled``.

    >>> stage_state(StageFacts("s", True, None, 0, 0.0), 60.0)
    'up'
    >>> stage_state(StageFacts("s", False, None, 0, 0.0), 60.0)
    'stopped'
    >>> stage_state(StageFacts("s", True, None, 10, 61.0), 60.0)
    'stalled'
    """
    if facts.crash is not None:
        return "crashed"
    if not facts.running:
        return "stopped"
    if facts.lag > 0 and facts.stalled_for >= stall_seconds:
        return "stalled"
    return "up"


def stage_problem(facts: StageFacts, stall_seconds: float) -> Problem | None:
    """The problem of one stage, or ``None`` when it is up.

    >>> stage_problem(StageFacts("profiles", True, None, 120, 75.4), 60.0).reason
    'no progress for 75 s while 120 records wait on its input (threshold 60 s)'
    >>> stage_problem(StageFacts("clusters", False, None, 0, 0.0), 60.0).reason
    'no running actor: the agent has stopped'
    """
    state = stage_state(facts, stall_seconds)
    if state == "crashed":
        reason = (
            f"crashed: {facts.crash}; the records it held stay unacknowledged (their partitions "
            "cannot commit past them) until the worker restarts"
        )
    elif state == "stopped":
        reason = "no running actor: the agent has stopped"
    elif state == "stalled":
        reason = (
            f"no progress for {facts.stalled_for:.0f} s while {facts.lag} records wait on its input "
            f"(threshold {stall_seconds:g} s)"
        )
    else:
        return None
    return Problem(facts.stage, state, reason)


@dataclass(frozen=True)
class Verdict:
    """The answer of ``/health/ready``: ``status`` is ``ok``, ``recovering`` or ``failing``."""

    ready: bool
    status: str
    problems: tuple[Problem, ...]


def readiness(recovering: str | None, stages: Sequence[StageFacts], stall_seconds: float) -> Verdict:
    """Ready when no table recovers (``recovering`` is ``None``, else what is recovering) and
    every stage is up.

    >>> v = readiness("tables activity, profiles", [], 60.0)
    >>> v.ready, v.status, v.problems[0].as_dict()["stage"]
    (False, 'recovering', 'tables')
    >>> readiness(None, [], 60.0).status
    'ok'
    """
    problems = [Problem(RECOVERY_STAGE, "recovering", f"recovering {recovering}")] if recovering else []
    problems.extend(p for p in (stage_problem(s, stall_seconds) for s in stages) if p is not None)
    if not problems:
        return Verdict(True, "ok", ())
    status = "recovering" if all(p.state == "recovering" for p in problems) else "failing"
    return Verdict(False, status, tuple(problems))


def recovery_description(first_done: bool, in_recovery: bool, tables: Iterable[str]) -> str | None:
    """What ``/health/ready`` says is recovering, or ``None`` when nothing is.

    >>> recovery_description(True, False, [])
    >>> recovery_description(False, False, [])
    'tables (the first recovery has not completed)'
    >>> recovery_description(True, True, ["profiles", "activity", "profiles"])
    'tables activity, profiles'
    """
    if first_done and not in_recovery:
        return None
    names = sorted(set(tables))
    if names:
        return "tables " + ", ".join(names)
    return "tables (the first recovery has not completed)" if not first_done else "tables"


def pending_description(unacked: Iterable[tuple[str, int, int]], running: Iterable[str]) -> str:
    """One phrase for what a stopping worker still waits for: unacknowledged records (topic,
    partition, offset) and the agents not yet stopped.

    >>> pending_description([("pe", 0, 3), ("pe", 0, 1), ("cs", 1, 9)], ["profiles"])
    '3 unacknowledged records (cs[1] offset 9, pe[0] offsets 1..3); agents not stopped: profiles'
    >>> pending_description([], [])
    'nothing known (no unacknowledged record, every agent stopped)'
    """
    by_partition: dict[tuple[str, int], list[int]] = {}
    count = 0
    for topic, partition, offset in unacked:
        by_partition.setdefault((topic, partition), []).append(offset)
        count += 1
    parts = []
    if count:
        spans = []
        for (topic, partition), offsets in sorted(by_partition.items()):
            low, high = min(offsets), max(offsets)
            where = f"offset {low}" if low == high else f"offsets {low}..{high}"
            spans.append(f"{topic}[{partition}] {where}")
        parts.append(f"{count} unacknowledged record{'s' if count != 1 else ''} ({', '.join(spans)})")
    agents = sorted(set(running))
    if agents:
        parts.append("agents not stopped: " + ", ".join(agents))
    return "; ".join(parts) if parts else "nothing known (no unacknowledged record, every agent stopped)"
