"""Every topic a deployment needs, and how a broker's topics are compared with it (pure).

:func:`topic_specs` describes each topic from :class:`~app.runtime.settings.Settings`: the
inputs and outputs, the internal topics between the stages and one changelog per table
of :data:`TABLES` (Faust names it ``<app_id>-<table>-changelog``). ``ensure_topics``
(``app/runtime/topics_admin.py``) creates the missing ones from it, then gives what the broker
reports to :func:`check_topics`; a ``fatal`` mismatch keeps the worker from starting.

What must hold, and why:

* a **changelog** is ``cleanup.policy=compact``: it is the table's only durable copy,
  and ``delete`` drops state older than ``retention.ms``, so a worker recovering after
  that rebuilds an incomplete table (the identity graph, the profiles);
* a table's changelog has the partitions of its **source topic** (changelog partition
  ``p`` holds the state of source partition ``p``), and ``identity-aliases`` those of
  ``clickstream`` (ingest reads the alias table on clickstream's partition);
* ``identity-input`` and ``cluster-input`` (and their tables' changelogs) have exactly
  ONE partition: one ordered identity stream, one cluster model.

Other differences (an output with another partition count, an input compacted) lose
nothing the worker relies on: they are warnings.

Examples
--------
>>> from app.runtime.settings import Settings
>>> specs = {s.name: s for s in topic_specs(Settings(app_id="ps", topic_partitions=4))}
>>> specs["ps-identity-changelog"].partitions, specs["ps-identity-changelog"].configs["cleanup.policy"]
(1, 'compact')
>>> specs["clickstream"].partitions, specs["clickstream"].configs["cleanup.policy"]
(4, 'delete')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.runtime.settings import Settings

#: Retention of every delete-policy topic the worker creates: the compose broker's
#: ``KAFKA_LOG_RETENTION_HOURS: 168`` and kafka-init's ``DEAD_LETTER_RETENTION_MS``.
RETENTION_MS = 7 * 24 * 3600 * 1000

#: Where the fixes are explained.
DOC = "docs/operations.md, Topics"

#: aiokafka's ``ConfigResourceType.TOPIC`` in a DescribeConfigs response.
TOPIC_RESOURCE = 2

Kind = Literal["input", "output", "internal", "changelog"]


@dataclass(frozen=True)
class TableTopic:
    """A Faust table of ``app/runtime/tables.py``: its name and the topic that feeds it.

    ``single`` tables have ONE partition whatever ``PERSONA_TOPIC_PARTITIONS`` says.
    """

    table: str
    source: Callable[[Settings], str]
    single: bool = False

    def changelog(self, settings: Settings) -> str:
        """Faust's name of the table's changelog topic (``Table._changelog_topic_name``).

        >>> TableTopic("activity", lambda s: s.topics.clickstream).changelog(Settings(app_id="ps"))
        'ps-activity-changelog'
        """
        return f"{settings.app_id}-{self.table}-changelog"


#: Every table of ``app/runtime/tables.py``. A worker refuses to start with a table that
#: is not here (:func:`undescribed_tables`), and a unit test compares the two.
TABLES: tuple[TableTopic, ...] = (
    TableTopic("activity", lambda s: s.topics.clickstream),
    TableTopic("identity", lambda s: s.identity_input_topic, single=True),
    TableTopic("identity_alias", lambda s: s.identity_aliases_topic),
    TableTopic("profiles", lambda s: s.profile_events_topic),
    TableTopic("clusters", lambda s: s.cluster_input_topic, single=True),
)


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the deployment needs it.

    ``must_match`` says why the partition count must be exactly ``partitions`` (empty: another
    count is only a warning); ``scaled`` that the count is ``PERSONA_TOPIC_PARTITIONS``.
    """

    name: str
    kind: Kind
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)
    must_match: str = ""
    scaled: bool = True

    @property
    def cleanup_policy(self) -> str:
        return self.configs["cleanup.policy"]


def undescribed_tables(table_names: Iterable[str]) -> list[str]:
    """The tables (of a loaded Faust app) that :data:`TABLES` does not describe.

    >>> undescribed_tables(["activity", "identity", "wishlist"])
    ['wishlist']
    """
    known = {t.table for t in TABLES}
    return sorted(name for name in table_names if name not in known)


def topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic of the deployment: inputs, outputs, internal topics, one changelog per table.

    Examples
    --------
    >>> specs = topic_specs(Settings(app_id="ps", topic_partitions=2, replication_factor=3))
    >>> sorted(s.name for s in specs if s.kind == "changelog")  # doctest: +NORMALIZE_WHITESPACE
    ['ps-activity-changelog', 'ps-clusters-changelog', 'ps-identity-changelog',
     'ps-identity_alias-changelog', 'ps-profiles-changelog']
    >>> {s.replication_factor for s in specs}
    {3}
    >>> [s.name for s in specs if s.kind == "internal" and s.partitions == 1]
    ['ps-identity-input', 'ps-cluster-input']
    """
    n, rf, topics = settings.topic_partitions, settings.replication_factor, settings.topics
    delete = {"cleanup.policy": "delete", "retention.ms": str(RETENTION_MS)}
    sources = {t.source(settings): t for t in TABLES}
    single = {
        settings.identity_input_topic: "one ordered identity stream",
        settings.cluster_input_topic: "one cluster model",
    }
    must_match = {
        **{name: f"the {t.table} table is partitioned like it" for name, t in sources.items()},
        settings.identity_aliases_topic: f"co-partitioned with {topics.clickstream}: ingest reads the alias table",
        **single,
    }

    def spec(name: str, kind: Kind) -> TopicSpec:
        return TopicSpec(
            name, kind, 1 if name in single else n, rf, delete, must_match.get(name, ""), scaled=name not in single
        )

    specs = [spec(name, "input") for name in topics.inputs()]
    specs += [spec(name, "output") for name in topics.outputs()]
    specs += [spec(name, "internal") for name in settings.internal_topics()]
    specs += [
        TopicSpec(
            t.changelog(settings),
            "changelog",
            1 if t.single else n,
            rf,
            {"cleanup.policy": "compact"},
            f"partition p of the {t.table} table's state is fed by partition p of {t.source(settings)}",
            scaled=not t.single,
        )
        for t in TABLES
    ]
    return tuple(specs)


@dataclass(frozen=True)
class Mismatch:
    """A difference between a topic on the broker and its :class:`TopicSpec`; ``message`` is one line."""

    topic: str
    message: str
    fatal: bool


def _policy_set(policy: str) -> frozenset[str]:
    return frozenset(p.strip() for p in policy.split(",") if p.strip())


def _partition_fix(spec: TopicSpec, actual: int, app_owned: bool) -> str:
    if not spec.scaled:
        return "Kafka cannot remove partitions: deploy under a new PERSONA_APP_ID"
    elsewhere = "deploy under a new PERSONA_APP_ID" if app_owned else f"recreate it with {spec.partitions} partitions"
    created_with = f"if the deployment was created with {actual} partitions set PERSONA_TOPIC_PARTITIONS={actual}"
    return f"{created_with}, else {elsewhere}"


def compare(spec: TopicSpec, partitions: int | None, policy: str | None, app_id: str) -> list[Mismatch]:
    """What is wrong with one existing topic (``partitions``/``policy`` as the broker reports them).

    ``None`` means the broker did not report it: nothing is checked for it.

    Examples
    --------
    >>> from app.runtime.settings import Settings
    >>> specs = {s.name: s for s in topic_specs(Settings(app_id="ps", topic_partitions=4))}
    >>> compare(specs["ps-profiles-changelog"], 4, "compact", "ps")
    []
    >>> [m.fatal for m in compare(specs["ps-profiles-changelog"], 4, "delete", "ps")]
    [True]
    >>> [m.fatal for m in compare(specs["segment-changes"], 2, None, "ps")]
    [False]
    """
    found: list[Mismatch] = []
    if partitions is not None and partitions != spec.partitions:
        if spec.must_match:
            fix = _partition_fix(spec, partitions, spec.name.startswith(f"{app_id}-"))
            message = (
                f"topic {spec.name} has {partitions} partitions, needs {spec.partitions} ({spec.must_match}); "
                f"fix: {fix} ({DOC})"
            )
        else:
            message = f"topic {spec.name} has {partitions} partitions, the worker creates it with {spec.partitions}"
        found.append(Mismatch(spec.name, message, fatal=bool(spec.must_match)))
    if policy is not None and _policy_set(policy) != _policy_set(spec.cleanup_policy):
        if spec.kind == "changelog":
            message = (
                f"topic {spec.name} has cleanup.policy={policy}, needs compact (it is the table's only durable copy: "
                "state older than retention.ms would be lost to a recovering worker); fix: kafka-configs.sh "
                f"--bootstrap-server BROKER --alter --entity-type topics --entity-name {spec.name} "
                f"--add-config cleanup.policy=compact ({DOC})"
            )
        else:
            message = f"topic {spec.name} has cleanup.policy={policy}, the worker creates it with {spec.cleanup_policy}"
        found.append(Mismatch(spec.name, message, fatal=spec.kind == "changelog"))
    return found


@dataclass(frozen=True)
class TopicReport:
    """The outcome of :func:`check_topics`: mismatches, and the topics whose policy went unchecked."""

    mismatches: tuple[Mismatch, ...]
    unreported_policies: tuple[str, ...]

    @property
    def fatal(self) -> list[str]:
        return [m.message for m in self.mismatches if m.fatal]

    @property
    def warnings(self) -> list[str]:
        return [m.message for m in self.mismatches if not m.fatal]


def check_topics(
    specs: Sequence[TopicSpec], partitions: Mapping[str, int], policies: Mapping[str, str], app_id: str
) -> TopicReport:
    """Compare the topics the broker has (``partitions``) with ``specs``; ``policies`` as far as it reported them.

    Topics the broker does not have are not checked (``ensure_topics`` creates them).

    Examples
    --------
    >>> from app.runtime.settings import Settings
    >>> settings = Settings(app_id="ps", topic_partitions=2)
    >>> specs = topic_specs(settings)
    >>> found = {s.name: s.partitions for s in specs}
    >>> report = check_topics(specs, {**found, "ps-identity-input": 2}, {"ps-activity-changelog": "compact"}, "ps")
    >>> len(report.fatal), len(report.unreported_policies) == len(specs) - 1
    (1, True)
    """
    mismatches = [
        mismatch
        for spec in specs
        if spec.name in partitions
        for mismatch in compare(spec, partitions[spec.name], policies.get(spec.name), app_id)
    ]
    unreported = tuple(spec.name for spec in specs if spec.name in partitions and spec.name not in policies)
    return TopicReport(tuple(mismatches), unreported)


def partition_counts(metadata_topics: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Partitions per topic from aiokafka's ``describe_topics()`` (metadata ``to_object()`` dicts).

    >>> partition_counts([{"error_code": 0, "topic": "t", "partitions": [{"partition": 0}, {"partition": 1}]},
    ...                   {"error_code": 3, "topic": "gone", "partitions": []}])
    {'t': 2}
    """
    return {t["topic"]: len(t["partitions"]) for t in metadata_topics if t["error_code"] == 0}


def cleanup_policies(responses: Iterable[Any]) -> dict[str, str]:
    """``cleanup.policy`` per topic from aiokafka's ``describe_configs()`` (a list of DescribeConfigsResponse).

    Each response's ``resources`` are ``(error_code, error_message, resource_type, resource_name,
    config_entries)`` and each entry starts ``(name, value, ...)`` in every version (v0-v2). A topic
    the broker answered with an error or without a ``cleanup.policy`` entry (the embedded Tansu
    broker reports only the configs a topic was created with) is left out.

    >>> from aiokafka.protocol.admin import DescribeConfigsResponse_v1 as Response
    >>> cleanup_policies([Response(throttle_time_ms=0, resources=[
    ...     (0, None, 2, "t", [("cleanup.policy", "compact", False, 5, False, [])]),
    ...     (0, None, 2, "u", []),
    ... ])])
    {'t': 'compact'}
    """
    return {
        name: entry[1]
        for response in responses
        for error_code, _message, resource_type, name, entries in response.resources
        if error_code == 0 and resource_type == TOPIC_RESOURCE
        for entry in entries
        if entry[0] == "cleanup.policy" and entry[1] is not None
    }


def topics_table(settings: Settings | None = None) -> str:
    """The topics table of docs/operations.md (default names; N is ``PERSONA_TOPIC_PARTITIONS``).

    >>> print(topics_table().splitlines()[2])
    | `clickstream` | input | N | `delete`, 7 days | the activity table is partitioned like it |
    """
    day_ms = 24 * 3600 * 1000
    rows = ["| topic | kind | partitions | cleanup.policy | the partition count must hold because |"]
    rows.append("|---|---|---|---|---|")
    for spec in topic_specs(settings or Settings()):
        retention = f", {int(spec.configs['retention.ms']) // day_ms} days" if "retention.ms" in spec.configs else ""
        partitions = "N" if spec.scaled else str(spec.partitions)
        why = spec.must_match or "nothing is co-partitioned with it: another count is a warning"
        rows.append(f"| `{spec.name}` | {spec.kind} | {partitions} | `{spec.cleanup_policy}`{retention} | {why} |")
    return "\n".join(rows)
