"""How compact:// packs profiles: bytes per packed value and CPU per pack/unpack, per codec.

Builds simulator profiles (:func:`bench.state_scale.profile_templates`), takes the first
``--train`` of them as the values a store sees first (a dictionary is made from them) and
measures every codec on the **others**, customers the dictionary never saw: the state
benchmark copies a few hundred templates under many ids, so a dictionary measured on the
templates it learned from would look better than it is (the "seen" column shows that figure).

The "held" column is what a packed value holds in memory (tracemalloc), not its length:
zstandard returns bytes that keep the allocation of zstd's worst-case bound, so
compact:// stores a copy of exactly their size (the ``compact_store.Codec`` row).

Codecs: zlib level 1 with one value as its preset dictionary (compact:// before zstd), and
zstd levels 1-3 (and 6) without a dictionary, with one value as a raw-content dictionary, and with a
dictionary trained on the first values (:func:`tables.compact_store.train_dictionary`).
CPU is given as a ratio to the zlib codec, measured in the same run (timeit, best of 5),
so a concurrent load on the machine shifts all codecs alike.

    .venv/bin/python -m bench.compact_codec [--customers 2000] [--train 64]
"""

from __future__ import annotations

import argparse
import sys
import timeit
import tracemalloc
import zlib
from collections.abc import Callable

import orjson
import zstandard

from bench.state_scale import profile_templates
from tables import compact_store

Pack = Callable[[bytes], bytes]


def zlib_preset(zdict: bytes) -> tuple[Pack, Pack]:
    def pack(data: bytes) -> bytes:
        deflate = zlib.compressobj(1, zdict=zdict)
        return deflate.compress(data) + deflate.flush()

    def unpack(data: bytes) -> bytes:
        inflate = zlib.decompressobj(zdict=zdict)
        return inflate.decompress(data) + inflate.flush()

    return pack, unpack


def zstd_codec(level: int, dictionary: bytes) -> tuple[Pack, Pack]:
    zdict = zstandard.ZstdCompressionDict(dictionary) if dictionary else None
    compressor = zstandard.ZstdCompressor(level=level, dict_data=zdict, write_dict_id=False)
    return compressor.compress, zstandard.ZstdDecompressor(dict_data=zdict).decompress


def held_bytes(pack: Pack, values: list[bytes]) -> float:
    """Bytes the packed values hold in memory, per value (tracemalloc: allocations, not lengths)."""
    tracemalloc.start()
    try:
        packed = [pack(v) for v in values]
        return (tracemalloc.get_traced_memory()[0] - sys.getsizeof(packed)) / len(values)
    finally:
        tracemalloc.stop()


def per_value_us(function: Pack, values: list[bytes]) -> float:
    return min(timeit.repeat(lambda: [function(v) for v in values], number=3, repeat=5)) / (3 * len(values)) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--train", type=int, default=compact_store.TRAINING_SAMPLES)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    values = profile_templates(args.seed, args.customers)
    encoded = [orjson.dumps({**v, "partition": i % 4}) for i, v in enumerate(values)]
    seen, unseen = encoded[: args.train], encoded[args.train :]
    first = next(d for d in encoded if len(d) >= 1024)
    trained = compact_store.train_dictionary(seen)
    print(f"{len(encoded)} profiles, JSON mean {sum(map(len, encoded)) / len(encoded):,.0f} B; dictionary trained "
          f"on the first {len(seen)} ({len(trained):,} B), measured on the other {len(unseen)}")
    codecs: dict[str, tuple[Pack, Pack]] = {"zlib 1 + preset (one value)": zlib_preset(first)}
    for level in (1, 2, 3):
        codecs[f"zstd {level}, no dictionary"] = zstd_codec(level, b"")
        codecs[f"zstd {level} + raw (one value)"] = zstd_codec(level, first)
        codecs[f"zstd {level} + trained"] = zstd_codec(level, trained)
    codecs["zstd 6 + trained"] = zstd_codec(6, trained)
    store_codec = compact_store.Codec(trained)
    codecs["compact_store.Codec (zstd 3)"] = store_codec.deflate, store_codec.inflate
    sample = unseen[:300]
    base: tuple[float, float] | None = None
    print(f"{'codec':30s} {'unseen B':>9s} {'held B':>7s} {'seen B':>7s} {'pack':>6s} {'unpack':>7s}"
          "   (held: allocated per packed value; CPU: x zlib 1 + preset)")
    for name, (pack, unpack) in codecs.items():
        if any(unpack(pack(d)) != d for d in sample):
            raise AssertionError(f"{name} does not round-trip")
        unseen_b = sum(len(pack(d)) for d in unseen) / len(unseen)
        seen_b = sum(len(pack(d)) for d in seen) / len(seen)
        packed = [pack(d) for d in sample]
        cpu = per_value_us(pack, sample), per_value_us(unpack, packed)
        base = base or cpu
        held = held_bytes(pack, sample)
        print(f"{name:30s} {unseen_b:9.0f} {held:7.0f} {seen_b:7.0f} {cpu[0] / base[0]:6.2f} {cpu[1] / base[1]:7.2f}")


if __name__ == "__main__":
    main()
