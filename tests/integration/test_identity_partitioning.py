"""The same simulator input gives the same identity clusters whatever the workers and partitions.

A customer's identifiers hash to different clickstream partitions, and with several
workers those partitions are processed concurrently. Identity state has one owner
(the one-partition identity-input topic), so the final partition of anonymous ids
into profiles must not depend on the deployment. Compared as clusters of anonymous
ids, not as profile id strings.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.embedded.stack import EmbeddedStack
from app.simulator import SimRecord
from app.simulator.producer import produce
from bench.identity_accuracy import (
    Expected,
    clusters,
    expected,
    offline_assignment,
    pairwise,
    read_assignment,
    simulated,
    wait_settled,
)
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.integration

END = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)  # fixed for the session


@pytest.fixture(scope="module")
def traffic() -> tuple[list[SimRecord], Expected]:
    from app.runtime.settings import Topics

    records = simulated(seed=11, customers=60, end=END, max_events=3000, topics=Topics())
    return records, expected(records)


def resolve_with(
    stack: EmbeddedStack, run_dir: Path, records: list[SimRecord], exp: Expected, workers: int, partitions: int
) -> dict[str, str | None]:
    pipeline = Pipeline(stack, run_dir, partitions=partitions)
    try:
        ports = [pipeline.start_worker()[1] for _ in range(workers)]
        names = {"clickstream": pipeline.topics.clickstream, "crm-profiles": pipeline.topics.crm_profiles}
        asyncio.run(produce([r._replace(topic=names[r.topic]) for r in records], stack.bootstrap, rate=None))
        assignment = wait_settled(lambda: read_assignment(pipeline.redis, exp.truth), timeout=120)
        processed = [pipeline.metric(port, "persona_events_processed_total") for port in ports]
        assert all(n > 0 for n in processed), f"a worker processed nothing: {processed}"
        return assignment
    finally:
        pipeline.stop()


@pytest.mark.on_both_brokers
def test_one_worker_one_partition_and_two_workers_four_partitions_give_the_same_clusters(
    stack: EmbeddedStack, tmp_path: Path, traffic: tuple[list[SimRecord], Expected]
) -> None:
    records, exp = traffic
    single = resolve_with(stack, tmp_path / "w1p1", records, exp, workers=1, partitions=1)
    double = resolve_with(stack, tmp_path / "w2p4", records, exp, workers=2, partitions=4)
    assert len(single) == len(exp.truth) > 50
    assert clusters(single) == clusters(double)
    # ... and they are the clusters of the resolver run in memory over the same records,
    assert clusters(single) == clusters(offline_assignment(exp.valid))
    # ... which merge something, and nothing wrong.
    scores = pairwise(single, exp.truth)
    assert scores.predicted_pairs > 5 and scores.precision == 1.0, scores


@pytest.mark.slow
def test_one_worker_four_partitions_gives_the_same_clusters(
    stack: EmbeddedStack, tmp_path: Path, traffic: tuple[list[SimRecord], Expected]
) -> None:
    records, exp = traffic
    four = resolve_with(stack, tmp_path / "w1p4", records, exp, workers=1, partitions=4)
    assert clusters(four) == clusters(offline_assignment(exp.valid))
