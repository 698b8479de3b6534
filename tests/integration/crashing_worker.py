"""A worker with two extra agents that fail on demand: how the integration tests break a stage.

Test-only: the integration tests run it (``python -m tests.integration.crashing_worker worker
--web-port N``) to kill or stall a stage without a backdoor in the product. It registers its
agents on the product's Faust app, then runs the normal ``persona`` command line, so the worker
is the product's own. Both read their records in batches of events, as the product's stages do.

* ``crash-test`` (topic ``<PERSONA_APP_ID>.crash-test``) raises when it reads ``b"crash"``;
* ``stall-test`` (topic ``<PERSONA_APP_ID>.stall-test``) waits forever when it reads ``b"stall"``.
"""

from __future__ import annotations

import asyncio
from typing import cast

from faust import Stream
from faust.types import StreamT

CRASH_STAGE = "crash-test"
STALL_STAGE = "stall-test"


def stage_topic(app_id: str, stage: str) -> str:
    """The input topic of a test agent in a deployment.

    >>> stage_topic("test-1", CRASH_STAGE)
    'test-1.crash-test'
    """
    return f"{app_id}.{stage}"


def register() -> None:
    """Add the ``crash-test`` and ``stall-test`` agents to the product's Faust app."""
    from app.runtime.faust_app import faust_app, settings

    def topic(stage: str) -> object:
        return faust_app.topic(
            stage_topic(settings.app_id, stage),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=1,
        )

    @faust_app.agent(topic(CRASH_STAGE), name=CRASH_STAGE)
    async def crash_test(stream: StreamT[bytes]) -> None:
        async for events in cast(Stream, stream).take_events(10, within=0.05):
            if any(event.value == b"crash" for event in events):
                raise RuntimeError("crash requested by the test")

    @faust_app.agent(topic(STALL_STAGE), name=STALL_STAGE)
    async def stall_test(stream: StreamT[bytes]) -> None:
        async for events in cast(Stream, stream).take_events(10, within=0.05):
            if any(event.value == b"stall" for event in events):
                await asyncio.Event().wait()


if __name__ == "__main__":
    register()
    from app.cli import main

    main()
