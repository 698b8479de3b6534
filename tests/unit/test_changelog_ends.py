"""Where recovery stops reading a changelog: the larger of the broker's two answers, never less."""

from __future__ import annotations

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from tables.bulk_recovery import last_offsets

TPS = [TP("t-changelog", p) for p in range(3)]


@given(
    st.lists(st.integers(-1, 10_000), min_size=3, max_size=3),
    st.lists(st.none() | st.integers(0, 10_001), min_size=3, max_size=3),
)
def test_recovery_reads_to_the_fetched_end_and_never_stops_short_of_the_listed_one(
    listed_values: list[int], fetched_values: list[int | None]
) -> None:
    listed = dict(zip(TPS, listed_values, strict=True))
    fetched = dict(zip(TPS, fetched_values, strict=True))
    ends = last_offsets(listed, fetched)
    assert set(ends) == set(listed)
    for tp, end in ends.items():
        assert end >= listed[tp]
        fetched_end = fetched[tp]
        if fetched_end is not None:
            assert end >= fetched_end - 1  # every record before the fetched high watermark is read
            assert end in (listed[tp], fetched_end - 1)


def test_a_partition_no_fetch_answered_keeps_its_listed_end() -> None:
    assert last_offsets({TPS[0]: 7}, {}) == {TPS[0]: 7}
