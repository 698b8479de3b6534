"""A Faust table store in memory that keeps cold values compressed: ``compact://``.

Faust's ``memory://`` store keeps every table value as Python objects; a profile of a
few kilobytes of JSON costs several times that as dicts, lists and floats (measured
by ``python -m bench.state_scale``). This store keeps the values most recently used
as objects (a bounded LRU, so the hot path costs a dict lookup) and every other value
as zstd-compressed JSON bytes, packed when it leaves the LRU. The JSON of the first
:data:`TRAINING_SAMPLES` values packed trains a zstd dictionary (in memory only) that
every value is packed with; until then those values are held as their JSON.

On simulator profiles (``python -m bench.compact_codec``: a dictionary trained on the
first values of one set of customers, measured on values of customers it never saw),
a profile of ~3.3 KB of JSON packs to ~0.97 KB, against ~1.28 KB with zlib level 1 and
one value as its preset dictionary, and packs and unpacks in about a quarter of zlib's CPU.

It is the memory store otherwise: the changelog, recovery and partition handling are
Faust's own (:class:`faust.stores.memory.Store`), only its mapping is replaced. Values
must be JSON values (our tables' values are: see ``app/runtime/tables.py``).

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

from collections import OrderedDict
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import orjson
import zstandard
from faust.stores import STORES
from faust.stores.memory import Store as MemoryStore

from tables.due_index import DUE_PREFIX, parse_due_key

DEFAULT_HOT_SIZE = 5_000
#: With a trained dictionary zstd level 3 packs a profile ~4% smaller than level 1 or 2 at about the
#: same CPU; level 6 ~2% smaller than 3 at ~3x its CPU to pack (``python -m bench.compact_codec``).
COMPRESSION_LEVEL = 3
#: Values whose JSON is shorter than this are kept as JSON, not compressed.
MIN_PACKED = 64
#: How a zstd frame starts; JSON never starts with it (``(``), so a value kept as JSON is told apart.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: Values (of ``MIN_PACKED`` bytes of JSON or more) whose JSON trains a table's dictionary: on profiles,
#: 20 pack unseen values within 1% of 64, 500 ~4% smaller (``python -m bench.compact_codec --train N``).
TRAINING_SAMPLES = 64
#: A 32 KB dictionary packs profiles <1% smaller than 16 KB, 8 KB ~2% larger.
DICTIONARY_SIZE = 16 * 1024


class Codec:
    """zstd at :data:`COMPRESSION_LEVEL` with one dictionary (none: ``b""``), for the JSON of values.

    ``dictionary``: a trained zstd dictionary (:func:`train_dictionary`) or raw content. Frames do not
    name their dictionary: data must be read back by a codec of the same dictionary.

    >>> codec = Codec(train_dictionary([orjson.dumps({"user": i, "tags": ["a", "b"] * i}) for i in range(40)]))
    >>> data = orjson.dumps({"user": 41, "tags": ["a", "b"] * 41})
    >>> codec.inflate(codec.deflate(data)) == data, len(codec.deflate(data)) < len(NO_DICTIONARY.deflate(data))
    (True, True)
    """

    def __init__(self, dictionary: bytes = b"") -> None:
        self.dictionary = dictionary
        zdict = zstandard.ZstdCompressionDict(dictionary) if dictionary else None
        self._compress = zstandard.ZstdCompressor(
            level=COMPRESSION_LEVEL, dict_data=zdict, write_dict_id=False, write_checksum=False
        ).compress
        self._decompress = zstandard.ZstdDecompressor(dict_data=zdict).decompress

    def deflate(self, data: bytes) -> bytes:
        """``data`` (JSON) packed; shorter than :data:`MIN_PACKED` kept as it is (a due time, a watermark).

        The packed bytes are a copy of exactly their size: the bytes zstandard returns keep the
        allocation of zstd's worst-case bound (~3.3 KB for a profile that packs to ~0.95 KB,
        measured with tracemalloc), which the store would hold for as long as the value.
        """
        return data if len(data) < MIN_PACKED else bytes(memoryview(self._compress(data)))

    def inflate(self, data: bytes) -> bytes:
        """The JSON :meth:`deflate` packed (a value kept as JSON is returned as it is)."""
        return self._decompress(data) if data[:4] == ZSTD_MAGIC else data


#: What a due key (tables/due_index.py) holds when its value is the due time its key already spells: the
#: empty bytes object, one shared object that no JSON value packs to. A due key then costs its str and
#: its dict entry, not also a bytes object of ~48 B for a copy of what its key says.
FROM_KEY = b""


def due_time_in_key(key: Any, data: bytes) -> bool:
    """Whether ``data`` is the JSON of the due time that ``key``, a due key, spells (so it need not be kept).

    >>> from tables.due_index import due_key
    >>> key = due_key(2, 1_764_700_000.25, "p-1")
    >>> due_time_in_key(key, b"1764700000.25"), due_time_in_key(key, b"1764700000.2501"), due_time_in_key("p-1", b"1")
    (True, False, False)
    """
    if not (isinstance(key, str) and key.startswith(DUE_PREFIX)) or len(data) >= MIN_PACKED:
        return False
    try:
        return orjson.dumps(parse_due_key(key)[1]) == data
    except ValueError:  # a key under the prefix that is not a due key's shape
        return False


#: The codec of values packed without a dictionary (:func:`pack` and :func:`unpack` by default).
NO_DICTIONARY = Codec()


def train_dictionary(samples: Sequence[bytes]) -> bytes:
    """A zstd dictionary of at most :data:`DICTIONARY_SIZE` bytes trained on ``samples`` (JSON of values).

    Deterministic (single-threaded training): the same samples give the same dictionary. When
    the samples are too few or too small to train on, their concatenation (its last
    ``DICTIONARY_SIZE`` bytes) serves as a raw-content dictionary.

    >>> train_dictionary([b'{"n":1}', b'{"n":2}'])        # too little to train on: raw content
    b'{"n":1}{"n":2}'
    """
    try:
        return zstandard.train_dictionary(DICTIONARY_SIZE, list(samples), level=COMPRESSION_LEVEL,
                                          threads=0).as_bytes()
    except zstandard.ZstdError:
        return b"".join(samples)[-DICTIONARY_SIZE:]


def pack(value: Any, codec: Codec = NO_DICTIONARY) -> bytes:
    """JSON, then zstd with ``codec``'s dictionary: a simulator profile of ~3.3 KB of JSON packs to
    ~1.6 KB without a dictionary, ~0.97 KB with one trained on other profiles.

    Values of one table repeat their keys and much of their layout, which a compressor cannot find
    within one value: a dictionary trained on a table's first values holds them.
    """
    return codec.deflate(orjson.dumps(value))


def unpack(data: bytes, codec: Codec = NO_DICTIONARY) -> Any:
    """The value :func:`pack` packed; ``codec`` must have the dictionary it was packed with.

    >>> unpack(pack(3100.5)), unpack(pack({"n": 1} | {f"k{i}": i for i in range(30)}))["n"]
    (3100.5, 1)
    """
    return orjson.loads(codec.inflate(data))


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
        # None until TRAINING_SAMPLES values were packed: then the codec of the dictionary trained on
        # their JSON, for every value (in memory only, so it never needs to be read back later).
        self._codec: Codec | None = None
        # Until then: the (key, JSON) of those values, held in _packed as their JSON meanwhile.
        self._untrained: list[tuple[Any, bytes]] = []

    def __getitem__(self, key: Any) -> Any:
        hot = self._hot
        if key in hot:
            hot.move_to_end(key)
            return hot[key]
        data = self._packed[key]  # KeyError for an unknown key, as a dict
        assert data is not None, "a stale packed value must have its object in the LRU"
        if not data:  # FROM_KEY: no JSON value is empty
            value: Any = parse_due_key(key)[1]
        else:
            value = orjson.loads(data) if self._codec is None else unpack(data, self._codec)
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
        self._store(key, data)

    def clear(self) -> None:
        self._packed.clear()
        self._hot.clear()
        self._untrained.clear()

    def dictionary(self) -> bytes:
        """The dictionary values are packed with (``b""`` while it is not trained yet)."""
        return b"" if self._codec is None else self._codec.dictionary

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
                self._store(key, orjson.dumps(value))

    def _store(self, key: Any, data: bytes) -> None:
        """Hold ``data``, the JSON of ``key``'s value, packed (as JSON while the dictionary is untrained)."""
        if self._codec is not None and len(data) >= MIN_PACKED:
            self._packed[key] = self._codec.deflate(data)
            return
        if len(data) < MIN_PACKED:
            # A copy of exactly its size: orjson's bytes keep a larger allocation (~4 KB for a float).
            self._packed[key] = FROM_KEY if due_time_in_key(key, data) else bytes(memoryview(data))
            return
        self._packed[key] = data
        self._untrained.append((key, data))
        if len(self._untrained) >= TRAINING_SAMPLES:
            codec = self._codec = Codec(train_dictionary([sample for _, sample in self._untrained]))
            packed = self._packed
            for held, sample in self._untrained:
                if packed.get(held) is sample:  # not deleted or written again since
                    packed[held] = codec.deflate(sample)
            self._untrained = []


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
