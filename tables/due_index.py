"""The tick index kept in the profiles table: one key per profile that a tick may change.

A tick closes sessions and runs rule evaluations that fell due; it must find those
profiles without reading the others. The index used to live only in memory and was
rebuilt after every start by decoding every value of the table: at ten million
profiles on RocksDB that scan took longer than 20 minutes and held the event loop.
Now each profile that has something due also has a **due key** in the same table,

    ``__due__/<partition>/<due time, fixed width>/<profile id>``

written with the profile's value, into the same changelog partition, just before it. So
the index is recovered with the table (Faust's recovery and the bulk recovery restore
it like any key), its writes are ordered with the values they describe, and a store
whose keys are sorted (RocksDB) can read the earliest due keys of a partition directly.

A due key is a hint, never the truth: a tick reads the profile's value and recomputes
what is due, deleting a key that no longer matches (see :mod:`app.profiles.fold`).
A table written before due keys existed has no ``__due_indexed__/<partition>`` marker:
then one scan of its values writes the keys and the marker, once.

Examples
--------
>>> key = due_key(2, 1_764_700_000.25, "p-1")
>>> key
'__due__/2/0001764700000.250/p-1'
>>> parse_due_key(key), is_index_key(key), is_index_key(indexed_key(2)), is_index_key("p-1")
((2, 1764700000.25, 'p-1'), True, True, False)
>>> due_key(0, 99.0, "p-9") < due_key(0, 100.0, "p-1")   # key order is due-time order
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson

DUE_PREFIX = "__due__/"
INDEXED_PREFIX = "__due_indexed__/"
#: Both prefixes start with this: one test skips every index key.
INDEX_KEY_PREFIX = "__due"
#: How an index key starts in a store that keeps raw (JSON-serialized) keys.
RAW_INDEX_KEY_PREFIX = b'"' + INDEX_KEY_PREFIX.encode()
_TIME_WIDTH = 17  # 13 digits of epoch seconds (fixed width up to year 318857), 3 decimals


_DUE_KEY = f"{DUE_PREFIX}%s/%0{_TIME_WIDTH}.3f/%s"  # one format, not a nested field and a call: a key per event


def due_key(partition: int, at: float, profile_id: str) -> str:
    """The index key saying ``profile_id`` of ``partition`` is due at stream time ``at``."""
    return _DUE_KEY % (partition, max(0.0, at), profile_id)


def partition_prefix(partition: int) -> str:
    return f"{DUE_PREFIX}{partition}/"


def parse_due_key(key: str) -> tuple[int, float, str]:
    """``(partition, due time, profile id)`` of a due key."""
    partition, at, profile_id = key[len(DUE_PREFIX):].split("/", 2)
    return int(partition), float(at), profile_id


def indexed_key(partition: int) -> str:
    """The marker saying the partition's due keys were written (by the scan of an older table, or from its start)."""
    return f"{INDEXED_PREFIX}{partition}"


def is_index_key(key: Any) -> bool:
    """Whether a table key belongs to the tick index (not a profile): skipped when the table is read as profiles."""
    return isinstance(key, str) and key.startswith(INDEX_KEY_PREFIX)


class DueKeySource(Protocol):
    """A store whose keys are sorted and kept per partition (RocksDB): a tick reads its due keys directly."""

    def due_keys(self, partition: int) -> Iterator[str]:
        """The due keys of ``partition`` in key order (= due-time order), read lazily."""
        ...

    def partition_items(self, partition: int) -> Iterator[tuple[Any, Any]]:
        """Every (key, value) of ``partition``: the one scan of a table written before due keys existed."""
        ...


def sorted_due_keys(raw_keys: Iterable[bytes], partition: int) -> Iterator[str]:
    """The due keys of ``partition`` from the raw (JSON) keys of a sorted store, read from the partition's prefix.

    ``raw_keys``: the store's keys in order, from the first key at or after the partition's prefix.

    >>> raw = [orjson.dumps(k) for k in (due_key(1, 5.0, "p-a"), due_key(1, 7.0, "p-b"), due_key(2, 1.0, "p-c"))]
    >>> list(sorted_due_keys(iter(raw), 1))
    ['__due__/1/0000000000005.000/p-a', '__due__/1/0000000000007.000/p-b']
    """
    prefix = raw_partition_prefix(partition)
    for raw in raw_keys:
        if not raw.startswith(prefix):
            return
        yield str(orjson.loads(raw))


def raw_partition_prefix(partition: int) -> bytes:
    return b'"' + partition_prefix(partition).encode()
