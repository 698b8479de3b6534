"""What ``/health/ready`` and the stage gauges are decided from: facts gathered from the running worker.

The imperative shell of :mod:`app.runtime.health`. For each agent (stage) of the Faust app it reads
whether an actor runs, whether the agent's code raised since the worker started
(:mod:`app.runtime.supervision`), and the committed and end offsets of the input partitions this worker
holds; a timer exports the verdict as ``persona_agent_up``, ``persona_stage_stalled`` and
``persona_stage_lag_records`` every few seconds, so a stall is seen even when nobody asks.
"""

from __future__ import annotations

import time
from typing import Any, cast

from faust.types import TP

from app.runtime import health
from app.runtime.faust_app import faust_app, settings
from app.runtime.metrics import AGENT_UP, STAGE_LAG, STAGE_STALLED
from app.runtime.supervision import crashes

#: Input partition -> its progress at the last observation (:func:`app.runtime.health.track`).
_progress: dict[TP, health.PartitionProgress] = {}


def _input_topics(agent: Any) -> set[str]:
    return set(getattr(agent.channel, "topics", ()) or ())


def _actors(agent: Any) -> list[Any]:
    # The agent's live actors (Faust keeps them in a WeakSet, ``Agent._actors``).
    return list(agent._actors)


def _running(agent: Any) -> bool:
    return any(
        not actor.crashed and actor.actor_task is not None and not actor.actor_task.done()
        for actor in _actors(agent)
    )


def _crash(agent: Any) -> str | None:
    """The agent's recorded crash, or that of an actor the supervisor has not restarted yet."""
    recorded = crashes.get(agent.name)
    if recorded is not None:
        return recorded
    for actor in _actors(agent):
        if actor.crashed:
            description = health.crash_description(actor.crash_reason)
            if description is not None:
                return description
    return None


def _offsets(consumer: Any) -> dict[TP, tuple[int | None, int | None]]:
    """``(committed, highwater)`` of every partition assigned to this worker; empty before the consumer runs."""
    try:
        assigned = consumer.assignment()
    except Exception:  # ConsumerNotStarted and the like: nothing is assigned yet
        return {}
    committed = consumer._committed_offset  # Faust's record of what it committed (a defaultdict: .get)
    observed: dict[TP, tuple[int | None, int | None]] = {}
    for tp in assigned:
        try:
            highwater = consumer.highwater(tp)
        except Exception:
            highwater = None
        observed[tp] = (committed.get(tp), highwater)
    return observed


def stage_facts(now: float) -> list[health.StageFacts]:
    """The facts of every agent of the app at ``now`` (monotonic seconds); updates the progress memory."""
    global _progress
    _progress = health.track(_progress, _offsets(faust_app.consumer), now)
    facts = []
    for agent in faust_app.agents.values():
        topics = _input_topics(agent)
        held = [progress for tp, progress in _progress.items() if tp.topic in topics]
        facts.append(
            health.StageFacts(
                stage=str(agent.name),
                running=_running(agent),
                crash=_crash(agent),
                lag=sum(p.lag for p in held),
                stalled_for=health.longest_stall(held, now),
            )
        )
    return facts


def recovering() -> str | None:
    recovery = cast(Any, faust_app.tables).recovery
    in_recovery = bool(recovery.in_recovery)
    tables = (
        [recovery.tp_to_table[tp].name for tp in list(recovery.active_tps) if tp in recovery.tp_to_table]
        if in_recovery
        else []
    )
    return health.recovery_description(bool(recovery.completed.is_set()), in_recovery, tables)


def check() -> tuple[health.Verdict, list[health.StageFacts]]:
    """The readiness verdict now, with the facts it was decided from; exports the stage gauges."""
    facts = stage_facts(time.monotonic())
    for stage in facts:
        state = health.stage_state(stage, settings.stall_seconds)
        AGENT_UP.labels(stage.stage).set(0 if state in ("crashed", "stopped") else 1)
        STAGE_STALLED.labels(stage.stage).set(1 if state == "stalled" else 0)
        STAGE_LAG.labels(stage.stage).set(stage.lag)
    return health.readiness(recovering(), facts, settings.stall_seconds), facts


@faust_app.timer(min(5.0, settings.stall_seconds / 4))
async def export_stage_health() -> None:
    check()


def stop_pending() -> str:
    """What a stopping worker still waits for (read from the deadline thread: copies, no awaits)."""
    consumer = cast(Any, faust_app.consumer)
    unacked = [(m.tp.topic, m.tp.partition, m.offset) for m in list(consumer._unacked_messages)]
    agents = [f"{agent.name} ({agent.state})" for agent in list(faust_app.agents.values()) if agent.state != "shutdown"]
    return health.pending_description(unacked, agents)
