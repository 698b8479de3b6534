"""A Faust table store in memory that keeps cold values compressed: ``compact://``.

Faust's ``memory://`` store keeps every table value as Python objects; a profile of a
few kilobytes of JSON costs several times that as dicts, lists and floats (measured
by ``python -m bench.state_scale``). This store keeps the values most recently used
as objects (a bounded LRU, so the hot path costs a dict lookup) and every other value
as zlib-compressed JSON bytes, packed when it leaves the LRU. The first sizeable value
packed becomes zlib's preset dictionary for the others (~20% smaller for profiles).

It is the memory store otherwise: the changelog, recovery and partition handling are
Faust's own (:class:`faust.stores.memory.Store`), only its mapping is replaced. Values
must be JSON values (our tables' values are: see ``tables/definitions.py``).

Values handed out by the store are the store's own objects, as with ``memory://``:
callers must not mutate them in place (the pure ``apply`` functions return new values),
because a change not written with ``table[key] = value`` reaches no changelog.

Examples
--------
>>> values = CompactDict(hot_size=2)
>>> values["a"] = {"n": 1}; values["b"] = {"n": 2}; values["c"] = {"n": 3}
>>> values.packed_count()                       # "a" left the LRU and was packed
1
>>> values["a"], len(values), sorted(values)
({'n': 1}, 3, ['a', 'b', 'c'])
>>> del values["b"]; "b" in values, values.get("b")
(False, None)
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson
from faust.stores import STORES
from faust.stores.memory import Store as MemoryStore

DEFAULT_HOT_SIZE = 5_000
COMPRESSION_LEVEL = 1  # level 6 packs a profile only ~5% smaller at ~3x the CPU (measured on simulator profiles)
#: Values whose JSON is shorter than this are kept as JSON, not deflated.
MIN_PACKED = 64
ZLIB_HEADER = b"\x78"
#: JSON size from which a packed value is taken as the preset dictionary (a smaller one teaches little).
MIN_DICTIONARY = 1024


def pack(value: Any, zdict: bytes = b"") -> bytes:
    """JSON, then zlib: a simulator profile of ~3.3 KB of JSON packs to ~1.6 KB, ~1.3 KB with a dictionary.

    ``zdict``: a preset dictionary, the JSON of another value of the same table. Values of one
    table repeat their keys and much of their layout, which zlib cannot find within one value.
    """
    return _deflate(orjson.dumps(value), zdict)


def _deflate(data: bytes, zdict: bytes) -> bytes:
    if len(data) < MIN_PACKED:
        # Kept as its JSON, which never starts like a zlib stream (0x78): a due time, a watermark.
        # Setting up a deflate with a preset dictionary costs more than such a value is worth.
        return data
    if not zdict:
        return zlib.compress(data, COMPRESSION_LEVEL)
    deflate = zlib.compressobj(COMPRESSION_LEVEL, zdict=zdict)
    return deflate.compress(data) + deflate.flush()


def unpack(data: bytes, zdict: bytes = b"") -> Any:
    """The value :func:`pack` packed; ``zdict`` must be the dictionary it used, if it used one.

    Data packed without a dictionary reads back whatever ``zdict`` is (zlib marks the use of one).

    >>> unpack(pack(3100.5)), unpack(pack({"n": 1} | {f"k{i}": i for i in range(30)}))["n"]
    (3100.5, 1)
    """
    if data[:1] != ZLIB_HEADER:
        return orjson.loads(data)
    if not zdict:
        return orjson.loads(zlib.decompress(data))
    inflate = zlib.decompressobj(zdict=zdict)
    return orjson.loads(inflate.decompress(data) + inflate.flush())


class CompactDict(MutableMapping[Any, Any]):
    """A mapping that holds its ``hot_size`` most recently used values as objects, the rest packed."""

    def __init__(self, hot_size: int = DEFAULT_HOT_SIZE) -> None:
        if hot_size < 1:
            raise ValueError(f"hot_size must be at least 1, got {hot_size}")
        self.hot_size = hot_size
        # Every key is in _packed; its bytes are stale (None) while the key's newest value
        # lives only in _hot.
        self._packed: dict[Any, bytes | None] = {}
        self._hot: OrderedDict[Any, Any] = OrderedDict()
        # The JSON of the first value of MIN_DICTIONARY bytes or more packed; the preset dictionary
        # of every value packed after it (in memory only, so it never needs to be read back later).
        self._zdict = b""

    def __getitem__(self, key: Any) -> Any:
        hot = self._hot
        if key in hot:
            hot.move_to_end(key)
            return hot[key]
        data = self._packed[key]  # KeyError for an unknown key, as a dict
        assert data is not None, "a stale packed value must have its object in the LRU"
        value = unpack(data, self._zdict)
        self._keep_hot(key, value)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._packed[key] = None
        self._hot[key] = value
        self._hot.move_to_end(key)
        self._evict()

    def __delitem__(self, key: Any) -> None:
        del self._packed[key]
        self._hot.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._packed

    def __iter__(self) -> Iterator[Any]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def put_json(self, key: Any, data: bytes) -> None:
        """Set ``key`` to the value whose JSON is ``data``, packed at once (bulk recovery: no decode).

        >>> values = CompactDict(hot_size=2)
        >>> values.put_json("a", b'{"n":1}'); values.packed_count(), values["a"]
        (1, {'n': 1})
        """
        self._hot.pop(key, None)
        if not self._zdict and len(data) >= MIN_DICTIONARY:
            self._zdict = data
        self._packed[key] = _deflate(data, self._zdict)

    def clear(self) -> None:
        self._packed.clear()
        self._hot.clear()

    def packed_count(self) -> int:
        """Values held only as bytes (for tests and the state benchmark)."""
        return sum(1 for key, data in self._packed.items() if data is not None and key not in self._hot)

    def _keep_hot(self, key: Any, value: Any) -> None:
        self._hot[key] = value
        self._evict()

    def _evict(self) -> None:
        hot, packed = self._hot, self._packed
        while len(hot) > self.hot_size:
            key, value = hot.popitem(last=False)
            if packed.get(key, b"") is None:
                packed[key] = self._pack(value)

    def _pack(self, value: Any) -> bytes:
        data = orjson.dumps(value)
        if not self._zdict and len(data) >= MIN_DICTIONARY:
            self._zdict = data
        return _deflate(data, self._zdict)


class CompactStore(MemoryStore):
    """``memory://`` with :class:`CompactDict` as its mapping (URL ``compact://``)."""

    data: CompactDict

    def put_changelog_json(self, key: Any, data: bytes | None, partition: int) -> None:
        """Apply one changelog record whose value is JSON ``data`` (``None``: deleted), as recovery does."""
        if data is None:
            self.data.pop(key, None)
            self._key_partition.pop(key, None)
            return
        self.data.put_json(key, data)
        self._key_partition[key] = partition

    def __init__(self, url: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)  # the base sets self.url after __post_init__ has run
        self.data = CompactDict(int(self.url.query.get("hot", DEFAULT_HOT_SIZE)))


STORES.aliases.setdefault("compact", f"{__name__}:CompactStore")
