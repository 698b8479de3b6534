"""The compact:// store's mapping behaves exactly like a dict, whatever is packed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.settings import Settings
from tables.compact_store import (
    MIN_PACKED,
    NO_DICTIONARY,
    TRAINING_SAMPLES,
    ZSTD_MAGIC,
    Codec,
    CompactDict,
    CompactStore,
    pack,
    train_dictionary,
    unpack,
)

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


def test_values_held_before_the_dictionary_is_trained_are_packed_with_it_and_read_back() -> None:
    small = {"merged_into": "p-a", "change_id": "c1", "offset": 12, "partition": 0}
    values = CompactDict(hot_size=1)
    values.put_json("tomb", orjson.dumps(small))  # a sample too: its JSON is MIN_PACKED bytes or more
    profiles = profile_values(TRAINING_SAMPLES + 6)
    for i, value in enumerate(profiles[: TRAINING_SAMPLES - 2]):
        values[f"p{i}"] = value
    values["last"] = {}  # too small to be a sample
    assert values.dictionary() == b"" and values._packed["p0"] == orjson.dumps(profiles[0])  # held as JSON
    for i, value in enumerate(profiles[TRAINING_SAMPLES - 2 :], start=TRAINING_SAMPLES - 2):
        values[f"p{i}"] = value
    values["last"] = {}
    assert values.dictionary() != b"" and (values._packed["p0"] or b"")[:4] == ZSTD_MAGIC
    assert values["tomb"] == small and [values[f"p{i}"] for i in range(len(profiles))] == profiles
    later = [len(values._packed[f"p{i}"] or b"") for i in range(TRAINING_SAMPLES, len(profiles))]
    assert sum(later) < 0.9 * sum(len(pack(v)) for v in profiles[TRAINING_SAMPLES:])


def test_a_value_rewritten_before_the_dictionary_is_trained_keeps_its_newest_value() -> None:
    values = CompactDict(hot_size=1)
    profiles = profile_values(TRAINING_SAMPLES + 1)
    values.put_json("p", orjson.dumps(profiles[0]))
    values.put_json("p", orjson.dumps(profiles[1]))
    values.put_json("gone", orjson.dumps(profiles[2]))
    del values["gone"]
    for i, value in enumerate(profiles[3:], start=3):
        values.put_json(f"p{i}", orjson.dumps(value))
    assert values.dictionary() != b""
    assert values["p"] == profiles[1] and "gone" not in values and len(values) == len(profiles) - 2


def test_the_dictionary_depends_only_on_the_values_packed_first() -> None:
    def trained() -> bytes:
        values = CompactDict(hot_size=1)
        for i, value in enumerate(profile_values(TRAINING_SAMPLES)):
            values.put_json(f"p{i}", orjson.dumps(value))
        return values.dictionary()

    assert trained() == trained() != b""


def test_samples_too_small_to_train_on_become_a_raw_content_dictionary() -> None:
    samples = [orjson.dumps({"n": i, "pad": "x" * 60}) for i in range(3)]
    dictionary = train_dictionary(samples)
    assert dictionary == b"".join(samples)
    codec = Codec(dictionary)
    assert unpack(pack({"n": 9, "pad": "x" * 60}, codec), codec) == {"n": 9, "pad": "x" * 60}


trained_codec = Codec(train_dictionary([orjson.dumps(v) for v in profile_values(TRAINING_SAMPLES)]))


raw_codec = Codec(b'{"sessions": {"open": []}, "profile": {"events": 1}}' * 30)


@given(value=json_values, codec=st.sampled_from([NO_DICTIONARY, trained_codec, raw_codec]))
def test_any_json_value_packs_and_reads_back_small_ones_kept_as_json(value: Any, codec: Codec) -> None:
    packed = pack(value, codec)
    assert unpack(packed, codec) == value
    if len(orjson.dumps(value)) < MIN_PACKED:
        assert packed == orjson.dumps(value)  # told apart from a zstd frame by its first bytes
    else:
        assert packed[:4] == ZSTD_MAGIC
