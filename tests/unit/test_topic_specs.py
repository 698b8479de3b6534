"""The description of every topic (app/runtime/topic_specs.py) and its comparison with what a broker reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.protocol.admin import (
    DescribeConfigsResponse_v0,
    DescribeConfigsResponse_v1,
    DescribeConfigsResponse_v2,
)

from app.runtime.settings import Settings
from app.runtime.topic_specs import (
    RETENTION_MS,
    TABLES,
    TopicSpec,
    check_topics,
    cleanup_policies,
    partition_counts,
    topic_specs,
    topics_table,
    undescribed_tables,
)
from app.runtime.topics_admin import new_topic

SETTINGS = Settings(app_id="ps", topic_partitions=4, replication_factor=3)
SPECS = {spec.name: spec for spec in topic_specs(SETTINGS)}
COMPOSE = Path(__file__).parents[2] / "docker-compose.yml"


def healthy() -> dict[str, int]:
    """Every topic with the partitions it needs, as a broker's metadata would report it."""
    return {name: spec.partitions for name, spec in SPECS.items()}


def test_every_changelog_is_compacted_and_partitioned_like_its_source() -> None:
    changelogs = [spec for spec in SPECS.values() if spec.kind == "changelog"]
    assert [spec.name for spec in changelogs] == [f"ps-{t.table}-changelog" for t in TABLES]
    for table, spec in zip(TABLES, changelogs, strict=True):
        assert spec.configs == {"cleanup.policy": "compact"}, spec.name
        assert spec.partitions == SPECS[table.source(SETTINGS)].partitions, spec.name
        assert spec.must_match, spec.name


def test_other_topics_are_deleted_after_the_compose_retention() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    broker_ms = int(compose["kafka"]["environment"]["KAFKA_LOG_RETENTION_HOURS"]) * 3600 * 1000
    dead_letter_ms = int(compose["kafka-init"]["environment"]["DEAD_LETTER_RETENTION_MS"])
    assert RETENTION_MS == broker_ms == dead_letter_ms
    for spec in SPECS.values():
        if spec.kind != "changelog":
            assert spec.configs == {"cleanup.policy": "delete", "retention.ms": str(RETENTION_MS)}, spec.name


def test_replication_factor_is_the_setting_and_compose_asks_for_no_more_than_its_brokers() -> None:
    assert {spec.replication_factor for spec in SPECS.values()} == {3}
    assert {new_topic(spec).replication_factor for spec in SPECS.values()} == {3}
    document = yaml.safe_load(COMPOSE.read_text())
    brokers = [s for s in document["services"].values() if str(s.get("image", "")).startswith("apache/kafka")]
    wanted = int(document["x-persona-env"]["PERSONA_REPLICATION_FACTOR"])
    assert wanted == int(document["services"]["kafka-init"]["environment"]["PERSONA_REPLICATION_FACTOR"])
    assert 1 <= wanted <= len([s for s in brokers if "KAFKA_NODE_ID" in s.get("environment", {})])


def test_identity_and_cluster_streams_keep_one_partition_whatever_the_setting() -> None:
    single = {name for name, spec in SPECS.items() if spec.partitions == 1}
    assert single == {"ps-identity-input", "ps-identity-changelog", "ps-cluster-input", "ps-clusters-changelog"}
    assert all(not SPECS[name].scaled for name in single)


def test_topics_are_created_with_their_configs() -> None:
    created = new_topic(SPECS["ps-identity-changelog"])
    assert (created.name, created.num_partitions, created.topic_configs) == (
        "ps-identity-changelog",
        1,
        {"cleanup.policy": "compact"},
    )


def test_every_table_of_the_app_has_a_compacted_changelog_spec_faust_agrees_with() -> None:
    import app.runtime.tables  # noqa: F401  (registers every table on the app)
    from app.runtime.faust_app import faust_app, settings

    specs = {spec.name: spec for spec in topic_specs(settings)}
    assert faust_app.tables.keys(), "no table loaded"
    assert undescribed_tables(faust_app.tables.keys()) == []
    assert faust_app.conf.topic_replication_factor == settings.replication_factor
    config_of = faust_app.transport._topic_config  # what Faust's declaration would send
    for name, table in faust_app.tables.items():
        changelog = table.changelog_topic
        spec = specs[changelog.get_topic_name()]
        assert spec.kind == "changelog" and spec.cleanup_policy == "compact", name
        assert spec.partitions == table.partitions == changelog.partitions, name
        assert spec.must_match.endswith(table.source_topic), name  # fed partition by partition by its source
        assert changelog.replicas in (None, settings.replication_factor), name  # None: the app's setting
        assert config_of(changelog.retention, changelog.compacting, changelog.deleting) == spec.configs, name


def test_a_table_the_description_does_not_know_is_reported() -> None:
    assert undescribed_tables(["activity", "wishlist", "profiles"]) == ["wishlist"]


def test_topics_as_needed_give_no_mismatch() -> None:
    policies = {name: spec.cleanup_policy for name, spec in SPECS.items()}
    report = check_topics(list(SPECS.values()), healthy(), policies, "ps")
    assert report.mismatches == () and report.unreported_policies == ()


@pytest.mark.parametrize(
    ("topic", "partitions", "policy", "message"),
    [
        (
            "ps-identity-changelog",
            1,
            "delete",
            "topic ps-identity-changelog has cleanup.policy=delete, needs compact (it is the table's only durable "
            "copy: state older than retention.ms would be lost to a recovering worker); fix: kafka-configs.sh "
            "--bootstrap-server BROKER --alter --entity-type topics --entity-name ps-identity-changelog "
            "--add-config cleanup.policy=compact (docs/operations.md, Topics)",
        ),
        ("ps-clusters-changelog", 1, "compact,delete", "ps-clusters-changelog has cleanup.policy=compact,delete"),
        (
            "ps-profile-events",
            2,
            None,
            "topic ps-profile-events has 2 partitions, needs 4 (the profiles table is partitioned like it); fix: if "
            "the deployment was created with 2 partitions set PERSONA_TOPIC_PARTITIONS=2, else deploy under a new "
            "PERSONA_APP_ID (docs/operations.md, Topics)",
        ),
        (
            "ps-identity-aliases",
            8,
            None,
            "needs 4 (co-partitioned with clickstream: ingest reads the alias table)",
        ),
        ("clickstream", 2, None, "set PERSONA_TOPIC_PARTITIONS=2, else recreate it with 4 partitions"),
        ("ps-activity-changelog", 1, "compact", "needs 4 (partition p of the activity table's state is fed by"),
        (
            "ps-identity-input",
            4,
            "delete",
            "topic ps-identity-input has 4 partitions, needs 1 (one ordered identity stream); fix: Kafka cannot "
            "remove partitions: deploy under a new PERSONA_APP_ID (docs/operations.md, Topics)",
        ),
        ("ps-cluster-input", 2, None, "needs 1 (one cluster model)"),
    ],
)
def test_mismatches_that_lose_data_or_break_co_partitioning_are_fatal(
    topic: str, partitions: int, policy: str | None, message: str
) -> None:
    policies = {topic: policy} if policy else {}
    report = check_topics(list(SPECS.values()), {**healthy(), topic: partitions}, policies, "ps")
    assert len(report.fatal) == 1 and report.warnings == []
    assert message in report.fatal[0]
    assert "\n" not in report.fatal[0]


@pytest.mark.parametrize(
    ("topic", "partitions", "policy", "message"),
    [
        ("segment-changes", 8, None, "topic segment-changes has 8 partitions, the worker creates it with 4"),
        ("crm-profiles", 1, None, "topic crm-profiles has 1 partitions, the worker creates it with 4"),
        (
            "clickstream",
            4,
            "compact",
            "topic clickstream has cleanup.policy=compact, the worker creates it with delete",
        ),
    ],
)
def test_mismatches_that_lose_nothing_the_worker_relies_on_are_warnings(
    topic: str, partitions: int, policy: str | None, message: str
) -> None:
    policies = {topic: policy} if policy else {}
    report = check_topics(list(SPECS.values()), {**healthy(), topic: partitions}, policies, "ps")
    assert report.fatal == [] and report.warnings == [message]


def test_policies_are_compared_as_sets_and_missing_topics_are_not_checked() -> None:
    present = {name: count for name, count in healthy().items() if name != "ps-profiles-changelog"}
    policies = {"ps-activity-changelog": "compact", "ps-identity-input": "delete"}
    report = check_topics(list(SPECS.values()), present, policies, "ps")
    assert report.mismatches == ()
    assert "ps-profiles-changelog" not in report.unreported_policies
    assert set(report.unreported_policies) == set(present) - set(policies)
    spec = TopicSpec("t", "changelog", 1, 1, {"cleanup.policy": "compact,delete"})
    assert check_topics([spec], {"t": 1}, {"t": "delete, compact"}, "ps").mismatches == ()


def config_entry(version: int, name: str, value: str) -> tuple[Any, ...]:
    if version == 0:  # (name, value, read_only, is_default, is_sensitive)
        return (name, value, False, False, False)
    return (name, value, False, 1, False, [])  # (..., config_source, is_sensitive, synonyms)


@pytest.mark.parametrize(
    ("version", "response_class"),
    [(0, DescribeConfigsResponse_v0), (1, DescribeConfigsResponse_v1), (2, DescribeConfigsResponse_v2)],
)
def test_cleanup_policies_are_read_from_describe_configs_responses(version: int, response_class: Any) -> None:
    """The shape aiokafka's ``describe_configs`` returns: a list of responses, one per broker asked."""
    kafka_like = response_class(
        throttle_time_ms=0,
        resources=[
            (0, None, 2, "ps-identity-changelog", [config_entry(version, "retention.ms", "1"),
                                                    config_entry(version, "cleanup.policy", "delete")]),
            (0, None, 2, "ps-activity-changelog", [config_entry(version, "cleanup.policy", "compact")]),
            (3, "unknown topic", 2, "gone", []),
        ],
    )
    tansu_like = response_class(throttle_time_ms=0, resources=[(0, "No error.", 2, "clickstream", [])])
    policies = cleanup_policies([kafka_like, tansu_like])
    assert policies == {"ps-identity-changelog": "delete", "ps-activity-changelog": "compact"}
    # Round trip through the wire format, as the admin client receives it.
    decoded = response_class.decode(kafka_like.encode())
    assert cleanup_policies([decoded]) == {"ps-identity-changelog": "delete", "ps-activity-changelog": "compact"}
    report = check_topics(list(SPECS.values()), healthy(), policies, "ps")
    assert [m.topic for m in report.mismatches] == ["ps-identity-changelog"] and report.fatal
    assert "clickstream" in report.unreported_policies


def test_partition_counts_come_from_topic_metadata() -> None:
    metadata = [
        {"error_code": 0, "topic": "a", "is_internal": False, "partitions": [{"partition": p} for p in range(3)]},
        {"error_code": 3, "topic": "b", "is_internal": False, "partitions": []},
    ]
    assert partition_counts(metadata) == {"a": 3}


def test_operations_md_topics_table_is_the_generated_one() -> None:
    text = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    start = text.index("<!-- topics-table:start -->") + len("<!-- topics-table:start -->")
    end = text.index("<!-- topics-table:end -->")
    assert text[start:end].strip() == topics_table().strip(), (
        "docs/operations.md topics table is stale: regenerate it from app.runtime.topic_specs.topics_table()"
    )
