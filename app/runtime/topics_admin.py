"""Create the deployment's topics as ``app.runtime.topic_specs`` describes them, and check the existing ones.

Run before a worker starts (and by tests before they publish), so no topic is
auto-created by a first produce with the broker's default partition count and policy,
which would break co-partitioning of inputs, tables and outputs or leave a changelog
uncompacted. Existing topics are compared with the description (partitions from
metadata, ``cleanup.policy`` from DescribeConfigs): a mismatch that would lose data or
break co-partitioning raises :class:`TopicMismatchError`, one line per mismatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from app.errors import PersonaError, StackError
from app.runtime.settings import Settings
from app.runtime.topic_specs import (
    TopicReport,
    TopicSpec,
    check_topics,
    cleanup_policies,
    partition_counts,
    topic_specs,
)

log = logging.getLogger(__name__)


class TopicMismatchError(PersonaError):
    """Existing topics differ from what the worker needs in a way that would lose data or break co-partitioning."""


def new_topic(spec: TopicSpec) -> NewTopic:
    """The admin client's create request for ``spec``, with its configs."""
    return NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=dict(spec.configs))


async def _started_admin(settings: Settings, timeout: float) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_list, request_timeout_ms=10000)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await admin.start()
            return admin
        except KafkaConnectionError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise StackError(f"cannot reach Kafka at {settings.bootstrap_list}: {exc}") from exc
            await asyncio.sleep(1.0)


async def describe(admin: AIOKafkaAdminClient, names: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Partition counts and cleanup policies (as far as the broker reports them) of existing topics ``names``."""
    partitions = partition_counts(await admin.describe_topics(names))
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    policies = cleanup_policies(await admin.describe_configs(resources)) if resources else {}
    return partitions, policies


def log_report(report: TopicReport) -> None:
    """Warnings for mismatches that lose nothing, and one line when cleanup policies went unchecked."""
    for warning in report.warnings:
        log.warning("%s", warning)
    if report.unreported_policies:
        names = report.unreported_policies
        log.warning(
            "cleanup.policy not checked for %d topic(s) the broker reported none for (%s): the embedded broker "
            "answers DescribeConfigs only with the configs a topic was created with",
            len(names),
            ", ".join(names[:3]) + (", ..." if len(names) > 3 else ""),
        )


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics with their configs, check every one; return the names that were created.

    Raises :class:`TopicMismatchError` (one line per mismatch, each saying how to fix it) when an
    existing topic would lose data or break co-partitioning.
    """
    specs = topic_specs(settings)
    admin = await _started_admin(settings, timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        for spec in missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created it first
                await admin.create_topics([new_topic(spec)])
        # Only topics known to exist: a metadata request for a missing topic may auto-create it.
        partitions, policies = await describe(admin, [spec.name for spec in specs])
    finally:
        await admin.close()
    report = check_topics(specs, partitions, policies, settings.app_id)
    log_report(report)
    if report.fatal:
        raise TopicMismatchError("existing topics do not match what the worker needs:\n" + "\n".join(report.fatal))
    return [spec.name for spec in missing]


def ensure_topics_sync(settings: Settings) -> list[str]:
    return asyncio.run(ensure_topics(settings))
