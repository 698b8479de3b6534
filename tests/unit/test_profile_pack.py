"""Packs of profile-events records: nothing lost or reordered, the limits kept, positions in record order."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.events.positions import STRIDE, position
from app.profiles.pack import pack

json_values = st.integers(min_value=-(2**53), max_value=2**53) | st.text(max_size=40)
records = st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=4).map(orjson.dumps), max_size=60)


@given(records, st.integers(min_value=1, max_value=STRIDE), st.integers(min_value=16, max_value=400))
def test_packs_carry_every_record_once_in_order_within_their_limits(
    values: list[bytes], max_events: int, max_bytes: int
) -> None:
    packs = pack(values, max_events=max_events, max_bytes=max_bytes)
    items = [item for p in packs for item in orjson.loads(p)["events"]]
    assert [orjson.dumps(item) for item in items] == values
    for p in packs:
        count = len(orjson.loads(p)["events"])
        assert 1 <= count <= max_events
        assert len(p) <= max_bytes or count == 1  # only a record too large on its own exceeds the limit


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=STRIDE - 1))
def test_positions_order_as_records_and_their_items(offset: int, index: int) -> None:
    assert position(offset) <= position(offset, index) < position(offset + 1)


def test_a_pack_index_beyond_the_stride_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        position(3, STRIDE)
    with pytest.raises(ValueError, match="max_events"):
        pack([b"{}"], max_events=STRIDE + 1)
