"""Configuration from the environment: defaults, overrides and clear errors."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.runtime.settings import Settings, settings_table


def test_defaults_work_without_any_environment() -> None:
    s = Settings.from_env({})
    assert s.topics.clickstream == "clickstream"
    assert s.topic_partitions == 1


def test_bootstrap_servers_accept_plain_and_faust_forms() -> None:
    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092, k2:9092"})
    assert s.broker_url == "kafka://k1:9092;kafka://k2:9092"
    assert s.bootstrap_list == "k1:9092,k2:9092"


def test_topic_names_are_overridable() -> None:
    assert Settings.from_env({"PERSONA_TOPIC_DEAD_LETTERS": "dlq"}).topics.dead_letters == "dlq"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PERSONA_TOPIC_PARTITIONS": "0"}, "at least 1"),
        ({"PERSONA_WEB_PORT": "http"}, "PERSONA_WEB_PORT must be an integer"),
        ({"PERSONA_TABLE_STORE": "redis://"}, "memory://, compact:// or rocksdb://"),
        ({"PERSONA_HMAC_SECRET": "short"}, "at least 16"),
        ({"REDIS_URL": "  "}, "must not be empty"),
    ],
)
def test_bad_values_raise_a_config_error_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_settings_table_documents_every_variable() -> None:
    table = settings_table()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "PERSONA_HMAC_SECRET", "PERSONA_TOPIC_CLICKSTREAM"):
        assert f"`{name}`" in table
