"""The compact:// store's mapping behaves exactly like a dict, whatever is packed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.runtime.settings import Settings
from tables.compact_store import (
    FROM_KEY,
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
    from app.profiles import state as profile_stage
    from app.sessions.state import ev

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


def test_a_due_key_whose_value_is_the_time_in_its_key_keeps_no_bytes_and_reads_back_its_value() -> None:
    from tables.due_index import due_key

    values = CompactDict(hot_size=1)
    exact, finer = due_key(1, 1_766_873_092.607, "p-1"), due_key(1, 1_766_873_092.6071, "p-2")
    values.put_json(exact, orjson.dumps(1_766_873_092.607))
    values.put_json(finer, orjson.dumps(1_766_873_092.6071))  # more decimals than its key: kept
    values["__due__/odd"] = 5.0
    values[due_key(0, 99.0, "p-3")] = 99.0  # written at run time, packed when it leaves the LRU
    values["last"] = 1
    assert values._packed[exact] is FROM_KEY and values._packed[due_key(0, 99.0, "p-3")] is FROM_KEY
    assert values._packed[finer] == b"1766873092.6071" and values._packed["__due__/odd"] == b"5.0"
    assert values[exact] == 1_766_873_092.607 and values[finer] == 1_766_873_092.6071
    assert values[due_key(0, 99.0, "p-3")] == 99.0 and values["__due__/odd"] == 5.0


@given(at=st.floats(0, 1e11, allow_nan=False), profile_id=st.text(min_size=1, max_size=12))
def test_any_due_key_reads_back_the_value_written_to_it(at: float, profile_id: str) -> None:
    from tables.due_index import due_key

    values, key = CompactDict(hot_size=1), due_key(3, at, profile_id)
    values.put_json(key, orjson.dumps(at))
    values[key + "x"] = at
    values["other"] = 0
    assert values[key] == at and values[key + "x"] == at


def test_packed_values_hold_no_more_memory_than_their_size() -> None:
    import tracemalloc

    profiles = [orjson.dumps(v) for v in profile_values(TRAINING_SAMPLES + 100)]
    values = CompactDict(hot_size=1)
    for i, data in enumerate(profiles[:TRAINING_SAMPLES]):
        values.put_json(f"t{i}", data)
    tracemalloc.start()
    try:
        for i, data in enumerate(profiles[TRAINING_SAMPLES:]):
            values.put_json(f"p{i}", data)
            values[f"s{i}"] = i * 0.5  # small, packed from orjson's bytes when it leaves the LRU
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    stored = sum(len(values._packed[f"p{i}"] or b"") + 33 + len(f"p{i}") + 49 + 80 for i in range(100))
    # ~1.2x (bytes, key strs, dict entries); ~15x when the spare capacity of zstandard's and orjson's bytes is kept
    assert held < 1.5 * stored
