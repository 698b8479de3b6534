"""The Redis alert rules (grafana/alerts.yml): loaded by Prometheus, on metrics the workers export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_grafana import METRIC, persona_series

ROOT = Path(__file__).resolve().parents[2]


def rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "grafana" / "alerts.yml").read_text(encoding="utf-8"))
    return {group["name"]: {rule["alert"]: rule for rule in group["rules"]} for group in doc["groups"]}


def test_prometheus_loads_the_alert_rules_compose_mounts() -> None:
    config = yaml.safe_load((ROOT / "grafana" / "prometheus.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["prometheus"]["volumes"])
    assert all(mounts[path] == "./grafana/alerts.yml" for path in config["rule_files"])


def test_redis_alerts_cover_lag_skipped_writes_data_loss_and_a_stuck_heal_on_exported_metrics() -> None:
    redis = rules()["persona-redis"]
    assert set(redis) == {"PersonaRedisLagging", "PersonaRedisWritesSkipped", "PersonaRedisDataLost",
                          "PersonaRedisSelfHealStuck"}
    known = persona_series()
    for name, rule in redis.items():
        used = METRIC.findall(rule["expr"])
        assert used and set(used) <= known, name
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"], name
    assert "persona_redis_lag_seconds" in redis["PersonaRedisLagging"]["expr"]
