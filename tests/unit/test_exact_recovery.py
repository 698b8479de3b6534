"""The rewind rule of exact recovery, checked for every watermark/committed pair."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tables.exact import is_watermark_key, rewind_target, watermark_key


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
