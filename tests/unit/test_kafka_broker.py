"""The Apache Kafka of the tests and `persona up --broker kafka` is the broker compose runs, fetched once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.embedded.kafka_broker import (
    COMPOSE_SETTINGS,
    KAFKA_VERSION,
    KafkaBroker,
    compose_broker_settings,
    fetch_kafka,
    server_properties,
)
from app.errors import StackError

COMPOSE = Path(__file__).parents[2] / "docker-compose.yml"
#: Compose settings that name this node's addresses or paths: the fixture sets its own.
ADDRESS_SETTINGS = {"listeners", "advertised.listeners", "listener.security.protocol.map",
                    "controller.quorum.voters", "log.dirs"}


def compose_kafka() -> dict[str, object]:
    service: dict[str, object] = yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]
    return service


def test_the_fixture_runs_every_broker_setting_of_the_compose_file() -> None:
    compose = compose_broker_settings(compose_kafka()["environment"])  # type: ignore[arg-type]
    fixture = server_properties(9092, 9093, Path("/data"))
    address_free = {k: v for k, v in compose.items() if k not in ADDRESS_SETTINGS}
    assert address_free == dict(COMPOSE_SETTINGS)
    assert {k: fixture[k] for k in address_free} == address_free
    assert set(fixture) - set(compose) == set(), "the fixture sets something compose does not"


def test_compose_runs_the_kafka_release_the_tests_run() -> None:
    assert compose_kafka()["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_without_java_or_maven_the_fetch_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(StackError, match=r"needs `java` on PATH"):
        fetch_kafka(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_completed_fetch_is_reused_without_java_or_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "cache" / KAFKA_VERSION / "lib"
    lib.mkdir(parents=True)
    (lib / ".complete").write_text(KAFKA_VERSION)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert fetch_kafka(tmp_path / "cache") == lib


def test_a_broker_with_its_jars_cached_but_no_java_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not the operating system's "No such file or directory" from starting a missing java.
    lib = tmp_path / "lib"
    lib.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(StackError, match=r"needs `java` on PATH"):
        KafkaBroker(tmp_path / "logs", tmp_path / "data", lib=lib).start()
    assert not (tmp_path / "data").exists()
