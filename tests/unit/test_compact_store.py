"""The compact:// store's mapping behaves exactly like a dict, whatever is packed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.settings import Settings
from tables.compact_store import CompactDict, CompactStore, pack, unpack

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
operations = st.lists(
    st.tuples(st.sampled_from(["set", "get", "del", "contains"]), st.integers(0, 9), json_values), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(ops=operations, hot_size=st.integers(1, 4))
def test_compact_dict_agrees_with_a_dict_under_any_operations(ops: list[tuple[str, int, Any]], hot_size: int) -> None:
    compact, reference = CompactDict(hot_size), {}
    for op, key, value in ops:
        if op == "set":
            compact[key] = value
            reference[key] = value
        elif op == "get":
            assert compact.get(key) == reference.get(key)
        elif op == "del" and key in reference:
            del compact[key]
            del reference[key]
        assert (key in compact) == (key in reference)
    assert dict(compact.items()) == reference
    assert len(compact) == len(reference) and set(compact) == set(reference)


def test_only_the_most_recently_used_values_stay_unpacked() -> None:
    values = CompactDict(hot_size=3)
    for i in range(10):
        values[f"k{i}"] = {"i": i}
    assert values.packed_count() == 7
    assert values["k0"] == {"i": 0}  # unpacked on read, now hot again
    assert values.packed_count() == 7  # k0 came back (its bytes still valid), k7 left the LRU and was packed


def test_a_missing_key_raises_key_error_like_a_dict() -> None:
    with pytest.raises(KeyError):
        CompactDict()["absent"]


def test_hot_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="hot_size"):
        CompactDict(0)


def test_pack_round_trips_a_profile_shaped_value() -> None:
    value = {"sessions": {"open": [], "recent_ids": ["e-1", "e-2"]}, "profile": {"counts": {"page_view": 3}}}
    assert unpack(pack(value)) == value
    assert len(pack({"ids": ["same-text"] * 50})) < len(b'"same-text",' * 50) / 5


def test_compact_store_url_is_accepted_by_settings_and_faust() -> None:
    from faust.stores import by_url

    assert Settings.from_env({"PERSONA_TABLE_STORE": "compact://"}).table_store == "compact://"
    assert by_url("compact://") is CompactStore


def profile_values(n: int) -> list[Any]:
    """``n`` profiles-table values of different customers (a few events each)."""
    from tables import profile_stage
    from tables.sessions import ev

    values = []
    for c in range(n):
        value = None
        for i in range(3 + c % 5):
            event = ev(f"c{c}-e{i}", 1_700_000_000.0 + 60 * i, ["page_view", "product_view"][i % 2],
                       product_id=f"p{c}{i}", category=["shoes", "bags"][c % 2], price=10.0 + c)
            value, _ = profile_stage.apply_event(value, event, i, 0, f"p-{c}")
        values.append(value)
    return values


def test_values_packed_before_and_after_the_preset_dictionary_read_back_and_it_packs_smaller() -> None:
    small = {"merged_into": "p-a", "change_id": "c1", "offset": 12, "partition": 0}
    values = CompactDict(hot_size=1)
    values["tomb"] = small  # packed without a dictionary: too small to teach one
    profiles = profile_values(6)
    for i, value in enumerate(profiles):
        values[f"p{i}"] = value
    values["last"] = {}
    assert values.packed_count() == 7
    assert values["tomb"] == small and [values[f"p{i}"] for i in range(6)] == profiles
    with_dictionary = sum(len(values._packed[f"p{i}"] or b"") for i in range(1, 6))
    assert with_dictionary < 0.9 * sum(len(pack(v)) for v in profiles[1:])
    assert unpack(pack(profiles[1], zdict=b"x" * 2000), zdict=b"x" * 2000) == profiles[1]


@given(value=json_values, zdict=st.sampled_from([b"", b'{"sessions": {"open": []}, "profile": {"events": 1}}' * 30]))
def test_any_json_value_packs_and_reads_back_small_ones_kept_as_json(value: Any, zdict: bytes) -> None:
    packed = pack(value, zdict)
    assert unpack(packed, zdict) == value
    if len(orjson.dumps(value)) < 64:
        assert packed == orjson.dumps(value)  # told apart from a zlib stream (0x78) by its first byte
