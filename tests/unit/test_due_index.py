"""The tick index's keys: they parse back, sort by due time, and a RocksDB store hands out one partition's in order."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from tables.due_index import due_key, indexed_key, is_index_key, parse_due_key
from tables.rocksdb_store import RocksDBStore
from tables.watermark import watermark_key

profile_ids = st.text(min_size=1, max_size=12)
due_times = st.floats(min_value=0, max_value=4e9, allow_nan=False).map(lambda t: round(t, 3))
entries = st.lists(st.tuples(st.integers(0, 11), due_times, profile_ids), max_size=40)


@given(st.integers(0, 11), due_times, profile_ids)
def test_a_due_key_parses_back_to_its_partition_time_and_profile(partition: int, at: float, profile_id: str) -> None:
    key = due_key(partition, at, profile_id)
    assert parse_due_key(key) == (partition, at, profile_id) and is_index_key(key)


@given(st.integers(0, 11), due_times, due_times, profile_ids, profile_ids)
def test_due_keys_of_a_partition_sort_by_due_time(partition: int, a: float, b: float, pa: str, pb: str) -> None:
    if a < b:
        assert due_key(partition, a, pa) < due_key(partition, b, pb)
        assert orjson.dumps(due_key(partition, a, pa)) < orjson.dumps(due_key(partition, b, pb))


@settings(max_examples=30, deadline=None)
@given(entries)
def test_a_rocksdb_store_hands_out_exactly_one_partitions_due_keys_earliest_first(
    tmp_path_factory: pytest.TempPathFactory, due: list[tuple[int, float, str]]
) -> None:
    path = tmp_path_factory.mktemp("due")  # a fresh database per example
    db = Rdict(str(path), options=Options(raw_mode=True))
    try:
        others = ["p-1", "__due", "__dud", "__e", watermark_key(1), indexed_key(1), indexed_key(2), "__due__/10/x"]
        for key in [*others, *(due_key(p, at, pid) for p, at, pid in due)]:
            db.put(orjson.dumps(key), b"1")
        store = RocksDBStore.__new__(RocksDBStore)  # only its databases: no app, no table
        store._dbs = {1: db}
        got = list(store.due_keys(1))
        assert set(got) == {due_key(p, at, pid) for p, at, pid in due if p == 1}
        times = [parse_due_key(k)[1] for k in got]
        assert times == sorted(times)
    finally:
        db.close()
        Rdict.destroy(str(path))
