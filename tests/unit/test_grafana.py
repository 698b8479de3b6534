"""Static checks of the operations files: dashboards, Prometheus, Grafana provisioning, compose.

No Docker engine runs in CI, so docker-compose.yml, the Dockerfile and the Grafana/Prometheus
configuration are checked by parsing them and asserting their structure and their agreement
with the code (metric names in app/runtime/metrics.py, settings in app/runtime/settings.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import fields
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import app.runtime.metrics
from app.runtime.auth import new_key
from app.runtime.settings import Settings, Topics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
OPERATIONS_MD = ROOT / "docs" / "operations.md"
#: What an operator puts in .env as PERSONA_API_KEYS (`persona keys create`).
API_KEY_ENTRY = new_key("ops", ["admin"]).entry

Json = dict[str, Any]


@cache
def builder() -> ModuleType:
    """grafana/build_dashboards.py, imported from its path (grafana/ is not a package)."""
    name = "persona_grafana_build_dashboards"
    spec = importlib.util.spec_from_file_location(name, GRAFANA / "build_dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panels(dashboard: Json) -> Iterator[Json]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: Json) -> Iterator[str]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield query if isinstance(query, str) else query.get("query", "")


# --- dashboards ---------------------------------------------------------------------------------


def test_dashboard_files_are_exactly_the_generated_ones() -> None:
    assert sorted(p.name for p in dashboards()) == sorted(builder().BUILDERS)


@pytest.mark.parametrize("name", ["persona-overview.json"])
def test_committed_dashboard_equals_generated(name: str) -> None:
    committed = (DASHBOARDS / name).read_text(encoding="utf-8")
    assert committed == builder().render(name), "run: python grafana/build_dashboards.py"


def test_check_mode_agrees() -> None:
    assert builder().main(["--check"]) == 0


def _series_names(collector_families: Iterator[Any]) -> set[str]:
    """The series names a family exposes: counters end in _total, histograms in _bucket etc."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names: set[str] = set()
    for family in collector_families:
        for suffix in suffixes.get(family.type, [""]):
            names.add(family.name + suffix)
    return names


def persona_series() -> set[str]:
    """Series names of the collectors defined in app/runtime/metrics.py, read from the objects."""
    collectors = [v for v in vars(app.runtime.metrics).values() if isinstance(v, MetricWrapperBase)]
    assert collectors, "app.runtime.metrics defines no metrics?"
    return _series_names(f for c in collectors for f in c.describe())


def default_series() -> set[str]:
    """Series of prometheus_client's default collectors (process_*, python_*) plus `up`."""
    return _series_names(iter(REGISTRY.collect())) | {"up"}


METRIC = re.compile(r"\b((?:persona|process|python)_[a-zA-Z0-9_]+|up)\b(?=\s*[{\[)])")


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_every_metric_in_a_dashboard_exists(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    known_persona = persona_series()
    known_other = default_series()
    used: set[str] = set()
    for expr in expressions(dashboard):
        for name in METRIC.findall(expr):
            used.add(name)
            if name.startswith("persona_"):
                assert name in known_persona, f"{name} is not a series of app/runtime/metrics.py"
            else:
                assert name in known_other, f"{name} is not exported by prometheus_client"
    assert any(n.startswith("persona_") for n in used)


def test_metric_regex_sees_suffixes_and_rejects_unknown_names() -> None:
    known = persona_series()
    assert "persona_stage_seconds_bucket" in known
    assert "persona_events_processed_total" in known
    assert "persona_redis_pending_keys" in known
    assert "persona_stage_seconds" not in known  # a histogram has no bare series
    assert METRIC.findall('sum(rate(persona_x_total{a="b"}[5m]))') == ["persona_x_total"]
    assert "process_resident_memory_bytes" in default_series()
    assert "process_cpu_seconds_total" in default_series()


def test_dashboard_structure() -> None:
    dashboard = json.loads((DASHBOARDS / "persona-overview.json").read_text())
    assert dashboard["uid"] == "persona-overview"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["instance"]["type"] == "query"
    assert variables["instance"]["includeAll"] and variables["instance"]["multi"]
    titles = [p["title"] for p in panels(dashboard) if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles must be unique (docs refer to them)"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)) and 0 not in ids
    cells: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel.get("description"), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and "" not in refs
        for target in panel["targets"]:
            if "persona_" in target["expr"] or "process_" in target["expr"]:
                assert 'instance=~"$instance"' in target["expr"], panel["title"]


def test_required_panels_are_present() -> None:
    dashboard = json.loads((DASHBOARDS / "persona-overview.json").read_text())
    exprs = "\n".join(expressions(dashboard))
    for needle in [
        "rate(persona_events_processed_total",
        "rate(persona_dead_letters_total",
        "rate(persona_duplicates_total",
        "rate(persona_http_events_total",
        "histogram_quantile(0.5, sum by (le, stage) (rate(persona_stage_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, stage) (rate(persona_stage_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, topic) (rate(persona_event_lag_seconds_bucket",
        "persona_table_keys",
        "rate(persona_redis_writes_total",
        "rate(persona_redis_errors_total",
        "rate(persona_redis_skipped_total",
        "persona_redis_pending_keys",
        "persona_recovery_rewinds_total",
        "process_resident_memory_bytes",
        "rate(process_cpu_seconds_total",
    ]:
        assert needle in exprs, needle


def test_every_panel_is_explained_in_operations_md() -> None:
    text = OPERATIONS_MD.read_text(encoding="utf-8")
    for path in dashboards():
        for panel in panels(json.loads(path.read_text())):
            if panel["type"] != "row":
                assert f"**{panel['title']}**" in text, f"docs/operations.md: {panel['title']}"


# --- alert rules ------------------------------------------------------------------------------


ALERTS = GRAFANA / "alerts.yml"


def alert_rules() -> list[Json]:
    rules: list[Json] = [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]
    return rules


def metric_labels() -> dict[str, set[str]]:
    """Series name -> label names, for the collectors of app/runtime/metrics.py (plus the scrape's own)."""
    out: dict[str, set[str]] = {}
    for collector in vars(app.runtime.metrics).values():
        if isinstance(collector, MetricWrapperBase):
            for name in _series_names(iter(collector.describe())):
                out[name] = set(collector._labelnames) | {"instance", "job"}
    return out


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_names_exported_metrics_and_their_labels(rule: Json) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    names = METRIC.findall(rule["expr"])
    assert names, f"{rule['alert']}: no metric found in {rule['expr']!r} (write name{{...}})"
    labels = metric_labels()
    for name in names:
        if name.startswith("persona_"):
            assert name in labels, f"{rule['alert']}: {name} is not a series of app/runtime/metrics.py"
            used = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])))
            assert used <= labels[name], f"{rule['alert']}: {used - labels[name]} not labels of {name}"
        else:
            assert name in default_series(), f"{rule['alert']}: {name} is not exported"
    assert f'job="{builder().WORKER_JOB}"' in rule["expr"]


def test_alerts_cover_a_dead_agent_and_a_stalled_stage() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert "persona_agent_up" in exprs["PersonaAgentDown"] and "== 0" in exprs["PersonaAgentDown"]
    assert "persona_stage_stalled" in exprs["PersonaStageStalled"]
    assert "persona_stage_lag_records" in exprs["PersonaStageStalled"]
    text = OPERATIONS_MD.read_text(encoding="utf-8")
    for name in exprs:
        assert f"**{name}**" in text, f"docs/operations.md does not explain {name}"


def test_prometheus_loads_the_alert_rules_compose_mounts() -> None:
    rule_files = load_yaml(GRAFANA / "prometheus.yml")["rule_files"]
    mounts = _mounts(services()["prometheus"])
    assert {mounts[path] for path in rule_files} == {"./grafana/alerts.yml"}


# --- Prometheus and Grafana provisioning -------------------------------------------------------


@cache
def compose() -> Json:
    data: Json = load_yaml(ROOT / "docker-compose.yml")
    return data


def services() -> dict[str, Json]:
    result: dict[str, Json] = compose()["services"]
    return result


def worker_services() -> dict[str, Json]:
    return {name: s for name, s in services().items() if s.get("command") == ["worker"]}


def test_prometheus_scrapes_every_worker() -> None:
    config = load_yaml(GRAFANA / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs[builder().WORKER_JOB]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = {
        f"{name}:{s['environment']['PERSONA_WEB_PORT']}" for name, s in worker_services().items()
    }
    assert targets == expected


def test_grafana_datasource_points_at_prometheus() -> None:
    config = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True
    scrape = load_yaml(GRAFANA / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape


def _mounts(service: Json) -> dict[str, str]:
    """container path -> host source of the service's volumes (short syntax)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        out[target] = source
    return out


def test_grafana_provisioning_is_mounted_and_loads_the_dashboards() -> None:
    grafana = services()["grafana"]
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "persona.yml")["providers"][0]
    assert provider["type"] == "file"
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == "./grafana/dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_dir + "/")
    assert (DASHBOARDS / home.removeprefix(dashboards_dir + "/")).is_file()
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


# --- docker compose -----------------------------------------------------------------------------


_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VAR.sub(one, value).replace("$$", "$")


def test_compose_top_level() -> None:
    data = compose()
    assert data["name"] == "persona-stream"
    assert "version" not in data  # obsolete in the compose specification
    expected = {"kafka", "kafka-init", "redis", "simulator", "prometheus", "grafana"}
    assert expected <= set(data["services"])
    assert len(worker_services()) >= 2


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
    assert services()["kafka"]["image"] == "apache/kafka:4.1.1"  # the release app/embedded/kafka_broker.py runs
    assert services()["redis"]["image"] == "redis:7-alpine"
    assert services()["prometheus"]["image"].startswith("prom/prometheus:")
    assert services()["grafana"]["image"].startswith("grafana/grafana-oss:")


def test_kafka_runs_kraft_with_a_listener_for_the_other_containers() -> None:
    env = {k: str(v) for k, v in services()["kafka"]["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in env)
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    assert advertised["PLAINTEXT"] == "kafka:9092" and listeners["PLAINTEXT"] == ":9092"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    node, address = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")
    assert node == env["KAFKA_NODE_ID"]
    assert address == "kafka" + listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"  # one broker
    assert "/var/lib/kafka/data" in _mounts(services()["kafka"])


def test_redis_is_a_bounded_lru_cache() -> None:
    command = services()["redis"]["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert re.fullmatch(r"\d+(mb|gb)", options["--maxmemory"])
    assert options["--maxmemory-policy"] == "allkeys-lru"


def _worker_env(service: Json) -> dict[str, str]:
    env = {
        k: interpolate(str(v), {"PERSONA_HMAC_SECRET": "x" * 32, "PERSONA_API_KEYS": API_KEY_ENTRY})
        for k, v in service["environment"].items()
    }
    return env


@pytest.mark.parametrize("name", sorted(worker_services()))
def test_worker_service(name: str) -> None:
    service = worker_services()[name]
    env = _worker_env(service)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["PERSONA_TOPIC_PARTITIONS"] == "4"
    assert env["PERSONA_WEB_HOST"] == "0.0.0.0"
    # The project's own parser accepts the configuration.
    settings = Settings.from_env(env)
    assert settings.broker_url == "kafka://kafka:9092"
    assert settings.topic_partitions >= len(worker_services())
    assert service["build"] == "."
    assert service["hostname"] == name
    test = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.web_port}/health" in test
    depends = service["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["kafka-init"]["condition"] == "service_completed_successfully"
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("variable", ["PERSONA_HMAC_SECRET", "PERSONA_API_KEYS"])
def test_the_hmac_secret_and_the_api_keys_must_be_supplied(variable: str) -> None:
    for service in worker_services().values():
        raw = service["environment"][variable]
        with pytest.raises(KeyError, match=variable):
            interpolate(raw, {})


def test_a_worker_service_starts_only_with_keys_and_its_own_secret() -> None:
    for service in worker_services().values():
        env = _worker_env(service)
        assert Settings.from_env(env).startup_refusal() is None
        without_keys = {k: v for k, v in env.items() if k != "PERSONA_API_KEYS"}
        assert "PERSONA_API_KEYS" in str(Settings.from_env(without_keys).startup_refusal())


def test_workers_publish_distinct_ports_on_localhost_only() -> None:
    host_ports = []
    for name, service in services().items():
        for port in service.get("ports", []):
            host_ip, host_port, _container = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} on every interface"
            host_ports.append(host_port)
    assert len(host_ports) == len(set(host_ports))
    published = {str(p).split(":")[1] for s in services().values() for p in s.get("ports", [])}
    assert {"3000", "9090", "6066"} <= published


def test_partitions_agree_everywhere() -> None:
    partitions = {_worker_env(s)["PERSONA_TOPIC_PARTITIONS"] for s in worker_services().values()}
    assert len(partitions) == 1
    (count,) = partitions
    assert str(services()["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]) == count
    assert services()["kafka-init"]["environment"]["PERSONA_TOPIC_PARTITIONS"] == count
    assert int(count) >= len(worker_services())


def test_kafka_init_creates_every_topic() -> None:
    init = services()["kafka-init"]
    created = set(init["environment"]["PERSONA_TOPICS"].split())
    defaults = Topics()
    assert created == {getattr(defaults, f.name) for f in fields(Topics)}
    script = "\n".join(init["command"])
    assert "--if-not-exists" in script and "$$PERSONA_TOPICS" in script
    assert "--entity-name dead-letters" in script
    retention_ms = int(init["environment"]["DEAD_LETTER_RETENTION_MS"])
    assert 0 < retention_ms <= 14 * 24 * 3600 * 1000  # short: dead letters hold raw PII
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_simulator_is_a_demo_profile_service() -> None:
    simulator = services()["simulator"]
    assert simulator["profiles"] == ["demo"]
    assert simulator["command"] == ["simulate", "--rate", "500"]
    assert simulator["healthcheck"] == {"disable": True}
    assert simulator["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "simulator" not in worker_services()


def test_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes", {}))
    for name, service in services().items():
        for target, source in _mounts(service).items():
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} for {target} is not declared"


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return [ln.strip() for ln in "\n".join(lines).replace("\\\n", " ").splitlines() if ln.strip()]


def test_dockerfile() -> None:
    lines = dockerfile()
    assert lines[0] == "FROM python:3.11-slim"
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(ln.startswith("RUN") and "pip install" in ln for ln in lines)
    assert lines[-2:] == ['ENTRYPOINT ["persona"]', 'CMD ["worker"]']
    copied = " ".join(ln for ln in lines if ln.startswith("COPY"))
    for needed in ("pyproject.toml", "app", "agents", "tables", "schemas"):
        assert needed in copied


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    ignored = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {".git", ".venv", "tests"} <= ignored
    assert not {"app", "agents", "tables", "schemas", "pyproject.toml"} & ignored
