"""The agents' supervisor: Faust's default (restart a crashed actor) that also remembers the crash.

Faust restarts an agent's actor when the agent's code raises (``mode.OneForOneSupervisor``), but
the records the crashed actor held are never acknowledged, so their partitions cannot commit past
them until the worker restarts, and a stop waits for them forever (``wait_empty``). The restarted
actor looks healthy; :data:`crashes` keeps what happened so ``/health/ready`` and
``persona_agent_up`` tell the truth (:mod:`app.runtime.health_probe`). Set on the app as its
``agent_supervisor`` (app/runtime/faust_app.py). This module imports no part of the app.
"""

from __future__ import annotations

from typing import Any

from mode import OneForOneSupervisor
from mode.types import ServiceT

from app.runtime.health import crash_description
from app.runtime.metrics import AGENT_CRASHES

#: Agent name -> its last crash (:func:`app.runtime.health.crash_description`) since the worker started.
crashes: dict[str, str] = {}


def record_crash(agent_name: str, reason: BaseException | None) -> bool:
    """Remember an agent's crash; ``False`` (nothing kept) for no reason or a cancellation.

    >>> record_crash("example-stage", KeyError("k")), crashes.pop("example-stage")
    (True, "KeyError: 'k'")
    >>> record_crash("example-stage", None), "example-stage" in crashes
    (False, False)
    """
    description = crash_description(reason)
    if description is None:
        return False
    crashes[agent_name] = description
    AGENT_CRASHES.labels(agent_name).inc()
    return True


class CrashRecordingSupervisor(OneForOneSupervisor):
    """``mode.OneForOneSupervisor`` that records each crash of an agent's actor before restarting it."""

    async def restart_service(self, service: ServiceT) -> None:
        agent: Any = getattr(service, "agent", None)
        if agent is not None:
            record_crash(str(agent.name), service.crash_reason)
        await super().restart_service(service)
