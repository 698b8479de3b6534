"""The rewind rule of exact recovery, checked for every watermark/committed pair."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tables.exact import ExactTable, is_watermark_key, rewind_target, watermark_key


@given(st.none() | st.integers(-1, 10_000), st.none() | st.integers(0, 10_000))
def test_rewind_never_skips_an_unapplied_offset_and_never_moves_forward(
    watermark: int | None, committed: int | None
) -> None:
    target = rewind_target(watermark, committed)
    next_unapplied = 0 if watermark is None else watermark + 1
    if target is None:
        # Reading resumes at `committed` (or the start): nothing after the watermark is skipped.
        assert committed is None or committed <= next_unapplied
    else:
        assert target == next_unapplied < (committed or 0)


def test_watermark_keys_are_recognisable_and_per_partition() -> None:
    assert watermark_key(3) != watermark_key(4)
    assert is_watermark_key(watermark_key(3))
    assert not is_watermark_key("0f" * 16)


def _table_expecting(expected: dict[int, int]) -> tuple[Any, list[tuple[int, int]]]:
    """An object with what ``ExactTable.admit`` uses, and the seeks its consumer was asked for."""
    seeks: list[tuple[int, int]] = []

    class Consumer:
        async def seek(self, tp: Any, offset: int) -> None:
            seeks.append((tp.partition, offset))

    table = SimpleNamespace(app=SimpleNamespace(consumer=Consumer()), expected=dict(expected), _gap_seeks={},
                            _admitted={}, name="activity", source_topic="clickstream")
    return table, seeks


async def test_a_batch_past_the_offset_its_state_expects_is_cut_there_and_the_partition_sought_back() -> None:
    # After a recovery Faust handed over records from before its seek, then dropped a stretch:
    # applied, the records after the stretch moved the states past it, and it counted as replays.
    table, seeks = _table_expecting({0: 100, 1: 50})
    kept = await ExactTable.admit(table, [(0, 100), (0, 101), (1, 50), (0, 140), (1, 51), (0, 141)])
    assert kept == [0, 1, 2, 4] and seeks == [(0, 102)]
    ExactTable.applied_through(table)
    assert table.expected == {0: 102, 1: 52}
    assert await ExactTable.admit(table, [(0, 90), (0, 102)]) == [0, 1]  # a replay, then what follows


async def test_a_gap_that_stays_after_five_seeks_back_is_a_hole_in_the_log_and_is_passed() -> None:
    # A transaction marker takes an offset no record has: seeking back meets the same next offset.
    table, seeks = _table_expecting({0: 10})
    for _ in range(5):
        assert await ExactTable.admit(table, [(0, 11), (0, 12)]) == []
    assert seeks == [(0, 10)] * 5
    assert await ExactTable.admit(table, [(0, 11), (0, 12)]) == [0, 1]
    ExactTable.applied_through(table)
    assert table.expected == {0: 13} and len(seeks) == 5


async def test_after_the_guard_window_every_record_passes_and_nothing_is_sought() -> None:
    # Out-of-order hand-overs follow a recovery; later a gap is a transactional publisher's marker.
    table, seeks = _table_expecting({0: 10})
    table._guard_until = 0.0
    records = [SimpleNamespace(message=SimpleNamespace(partition=0, offset=o)) for o in (12, 13)]
    assert await ExactTable.contiguous(table, records) == records and seeks == [] and table.expected == {}
