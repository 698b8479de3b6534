"""The ingest fold: a batch does what its records do one by one, and a replay applies nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.events.validation import Validator
from app.identity import IdentityResolver
from app.ingest import fold as activity_batch
from app.ingest.fold import IngestBatch, Source
from app.simulator import SimConfig, iter_records

END = datetime(2026, 1, 1, tzinfo=UTC)
NOW = END.timestamp() + 3600.0
CONFIG = SimConfig(seed=3, customers=40, end=END, max_events=1500, malformed_share=0.03, duplicate_share=0.03)


@pytest.fixture(scope="module")
def sources() -> list[Source]:
    records = [r for r in iter_records(CONFIG) if r.topic == CONFIG.topics.clickstream]
    return [Source(r.value, 0, offset, NOW) for offset, r in enumerate(records)]


def fold_in_batches(sources: list[Source], size: int, table: dict[str, Any]) -> list[IngestBatch]:
    validator, resolver, batches = Validator(), IdentityResolver("a-secret-of-16-chars"), []
    for start in range(0, len(sources), size):
        batch = activity_batch.fold(sources[start:start + size], table, {}, validator, resolver, now=NOW)
        table.update({key: state for key, (state, _) in batch.pending.items()})
        batches.append(batch)
    return batches


def test_a_batch_ends_with_the_states_and_outputs_of_its_records_applied_one_by_one(sources: list[Source]) -> None:
    one_by_one: dict[str, Any] = {}
    singles = fold_in_batches(sources, 1, one_by_one)
    batched: dict[str, Any] = {}
    batches = fold_in_batches(sources, 250, batched)
    assert batched == one_by_one
    for part in ("to_profiles", "rejected"):
        assert [x for b in batches for x in getattr(b, part)] != []
    assert [p for b in batches for p in b.to_profiles] == [p for b in singles for p in b.to_profiles]
    assert [(r.rejection, r.raw) for b in batches for r in b.rejected] == [
        (r.rejection, r.raw) for b in singles for r in b.rejected
    ]
    assert sum((b.processed for b in batches), start=type(batches[0].processed)()) == sum(
        (b.processed for b in singles), start=type(singles[0].processed)()
    )
    # A retry (the simulator's duplicates) is a duplicate event id, not a second application.
    assert sum(b.duplicates["event_id"] for b in batches) > 0


def test_a_replayed_batch_changes_no_state_and_sends_nothing_to_the_profiles_stage_again(
    sources: list[Source],
) -> None:
    # A written state's events reached the profiles stage (the agent writes it after the packs'
    # acknowledgements): sending them again over-counted profiles whose recent ids had moved on.
    table: dict[str, Any] = {}
    (first,) = fold_in_batches(sources[:400], 400, table)
    (again,) = fold_in_batches(sources[:400], 400, table)
    assert again.pending == {} and again.forwards == [] and not again.processed
    # Every valid event of the replay stands at or below its state's position: retries included.
    assert again.duplicates["offset"] == sum(first.processed.values()) + first.duplicates["event_id"]
    assert again.to_profiles == [] and first.to_profiles != []
    assert again.last_offsets == first.last_offsets == {0: (399, 400)}
