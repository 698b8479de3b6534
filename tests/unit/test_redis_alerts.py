"""The Redis alert rules (grafana/alerts.yml, group persona-redis); test_grafana.py checks their metrics."""

from __future__ import annotations

from tests.unit.test_grafana import alert_rules


def test_redis_alerts_cover_lag_skipped_writes_data_loss_and_a_stuck_heal() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules() if rule["alert"].startswith("PersonaRedis")}
    assert set(exprs) == {"PersonaRedisLagging", "PersonaRedisWritesSkipped", "PersonaRedisDataLost",
                          "PersonaRedisSelfHealStuck"}
    assert "persona_redis_lag_seconds" in exprs["PersonaRedisLagging"]
    assert "persona_redis_skipped_total" in exprs["PersonaRedisWritesSkipped"]
    assert "persona_redis_data_lost_total" in exprs["PersonaRedisDataLost"]
    assert "persona_redis_rebuild_partitions_queued" in exprs["PersonaRedisSelfHealStuck"]
