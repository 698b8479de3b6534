"""The worker heals Redis by itself: Redis emptied under traffic gets every serving key back, no operator."""

from __future__ import annotations

import pytest

from app.runtime.redis_heal import generation_key
from app.serving import keys as serving
from tests.integration.conftest import Pipeline, expire_killed_worker, get, wait_for
from tests.integration.test_recovery import replay_accounted
from tests.integration.test_serving import implied_state, serving_snapshot, settled, traffic

pytestmark = pytest.mark.integration


def behind(pipeline: Pipeline) -> list[str]:
    """Serving keys whose Redis value differs from what `persona rebuild-redis` would write now."""
    hashes, sets = implied_state(pipeline)
    redis_now = serving_snapshot(pipeline.redis)
    wrong = [key for key, members in sets.items() if redis_now.get(key) != members]
    for key, fields in hashes.items():
        served = redis_now.get(key)
        if serving.family(key) == "profile" and served is not None:
            # Features are computed at the stream time of the write (rebuilds: the profile's last event).
            served, fields = ({k: v for k, v in d.items() if k != "features"} for d in (served, fields))
        if served != {k: str(v) for k, v in fields.items()}:
            wrong.append(key)
    return wrong


def test_worker_restores_every_serving_key_after_redis_lost_its_data(pipeline: Pipeline) -> None:
    worker, port = pipeline.start_worker()
    counts = {"anon-s1": 3, "anon-s2": 2, "anon-s3": 1}
    pipeline.produce(pipeline.topics.clickstream, [r for a, n in counts.items() for r in traffic(a, n, 0)])

    def counts_served() -> dict[str, int]:
        return {anon: int(pipeline.activity(anon).get("events", 0)) for anon in counts}

    wait_for(lambda: counts_served() == counts, 60, lambda: f"activity never served: {counts_served()}")
    settled(pipeline, port, [pipeline.activity(anon)["profile_id"] for anon in counts])
    # The worker has read (here: written) the generation marker and finished its start re-serve.
    wait_for(lambda: bool(pipeline.redis.exists(generation_key(pipeline.app_id)))
             and get(port, "/health")[1].get("redis_rebuild_partitions_queued") == 0, 30,
             lambda: "the worker never wrote its generation marker")
    assert pipeline.metric(port, "persona_redis_data_lost_total") == 0

    # Redis loses every key of this deployment (its db), and traffic goes on.
    pipeline.redis.flushdb()
    more = {"anon-s1": 2, "anon-s4": 2}
    pipeline.produce(pipeline.topics.clickstream, [r for a, n in more.items() for r in traffic(a, n, 10)])
    for anon, n in more.items():
        counts[anon] = counts.get(anon, 0) + n

    wait_for(lambda: counts_served() == counts and not behind(pipeline), 60,
             lambda: f"Redis not healed: {counts_served()}, wrong keys {behind(pipeline)}")
    assert set(serving_snapshot(pipeline.redis)) == set.union(*map(set, implied_state(pipeline)))
    assert pipeline.metric(port, "persona_redis_data_lost_total") == 1
    assert pipeline.metric(port, "persona_redis_rebuilds_total", reason="data_lost") == 1
    assert pipeline.metric(port, "persona_redis_rebuild_keys_total") >= len(implied_state(pipeline)[0])
    wait_for(lambda: pipeline.metric(port, "persona_redis_rebuild_partitions_queued") == 0, 10,
             lambda: "the self-heal never finished")
    status, health = get(port, "/health")
    assert status == 200 and health["redis"] == "up" and health["redis_rebuild_partitions_queued"] == 0
    assert worker.running


@pytest.mark.slow
def test_a_worker_killed_before_its_redis_flush_leaves_no_key_behind_its_table(pipeline: Pipeline) -> None:
    # The first worker writes its tables but never flushes Redis before it is killed.
    pipeline.env_overrides["PERSONA_REDIS_FLUSH_INTERVAL"] = "600"
    worker, port = pipeline.start_worker()
    # Its own start re-serve (one partition of each serving table) is over before traffic comes.
    wait_for(lambda: pipeline.metric(port, "persona_redis_rebuilds_total", reason="assigned") == len(serving.TABLES)
             and get(port, "/health")[1].get("redis_rebuild_partitions_queued") == 0, 30,
             lambda: "the start re-serve never finished")
    counts = {f"anon-k{i}": 1 + i % 3 for i in range(12)}
    pipeline.produce(pipeline.topics.clickstream, [r for a, n in counts.items() for r in traffic(a, n, 0)])
    wait_for(lambda: len(implied_state(pipeline)[0]) >= 2 * len(counts) and not pipeline.redis.keys("persona:*"), 60,
             lambda: "the changelogs never held the state, or Redis was written")
    worker.kill()
    expire_killed_worker(pipeline, worker)

    # Its successor recovers the tables and re-serves them, though no key changes again.
    del pipeline.env_overrides["PERSONA_REDIS_FLUSH_INTERVAL"]
    _, port = pipeline.start_worker()
    wait_for(lambda: not behind(pipeline), 60, lambda: f"Redis behind the tables: {behind(pipeline)} "
             f"{[(k, implied_state(pipeline)[0].get(k), pipeline.redis.hgetall(k)) for k in behind(pipeline)[1:3]]}")
    assert {anon: int(pipeline.activity(anon)["events"]) for anon in counts} == counts
    # No watermark had been written: its clickstream is read again from offset 0, every record of it.
    wait_for(lambda: replay_accounted(pipeline, port) == sum(counts.values()), 30,
             lambda: f"clickstream records read again: {replay_accounted(pipeline, port)} of {sum(counts.values())}")
    assert pipeline.metric(port, "persona_redis_rebuilds_total", reason="assigned") >= 1
    assert pipeline.metric(port, "persona_redis_rebuild_keys_total") >= len(implied_state(pipeline)[0])
