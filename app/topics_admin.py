"""Create the pipeline's input and output topics with the configured partition count.

Run before a worker starts (and by tests before they publish), so no topic is
auto-created by a first produce with the broker's default partition count, which would
break co-partitioning of inputs, tables and outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from app.errors import StackError
from app.settings import Settings

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; return the names that were created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_list, request_timeout_ms=10000)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise StackError(f"cannot reach Kafka at {settings.bootstrap_list}: {exc}") from exc
            await asyncio.sleep(1.0)
    try:
        existing = set(await admin.list_topics())
        wanted = {name: settings.topic_partitions for name in [*settings.topics.inputs(), *settings.topics.outputs()]}
        # Internal topics have their own partition counts (the identity input has exactly one).
        wanted.update(settings.internal_topics())
        missing = [name for name in wanted if name not in existing]
        for name in missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created it first
                await admin.create_topics([NewTopic(name, wanted[name], 1)])
        return missing
    finally:
        await admin.close()


def ensure_topics_sync(settings: Settings) -> list[str]:
    return asyncio.run(ensure_topics(settings))
