"""The cost of the Redis self-heal's re-serve (app/runtime/redis_heal.py) on realistic profiles.

Builds realistic ``profiles`` table values (bench.state_scale's seeded simulator folds),
copies them under ``--profiles`` ids, then re-serves them as the worker does: chunks of
``--chunk`` values turned into serving keys and segment memberships by
:func:`app.runtime.redis_heal.chunk_changes`, offered to a :class:`app.runtime.redis_sink.RedisSink` and
flushed to a real throw-away redis-server. Reports the wall time, the CPU time of the
derivation alone per value, and the longest chunk (derivation plus flush: the longest the
event loop is held or waited on between two yields): median, 99th percentile, longest.

    .venv/bin/python -m bench.reserve_cost [--profiles 100000] [--chunk 200]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from app.embedded.stack import start_redis
from app.runtime.redis_heal import chunk_changes
from app.runtime.redis_sink import RedisSink
from bench.state_scale import profile_templates


async def reserve(url: str, values: list[tuple[str, dict[str, Any]]], chunk: int) -> dict[str, float]:
    sink = RedisSink(url, ttl_seconds=3600, max_pending=100_000)
    derive = 0.0
    chunks: list[float] = []
    keys = 0
    began = time.perf_counter()
    for start in range(0, len(values), chunk):
        t0 = time.perf_counter()
        entries, members = chunk_changes("profiles", values[start : start + chunk], time.time(), {})
        derive += time.perf_counter() - t0
        for key, fields in entries:
            sink.offer(key, fields)
        for set_key, member in members:
            sink.offer_member(set_key, member, True)
        keys += await sink.flush()
        chunks.append(time.perf_counter() - t0)
    wall = time.perf_counter() - began
    await sink.close()
    return {"profiles": len(values), "keys": keys, "wall_s": round(wall, 2),
            "values_per_s": round(len(values) / wall), "derive_us_per_value": round(1e6 * derive / len(values), 1),
            "chunk_ms_p50": round(1e3 * sorted(chunks)[len(chunks) // 2], 1),
            "chunk_ms_p99": round(1e3 * sorted(chunks)[int(len(chunks) * 0.99)], 1),
            "chunk_ms_max": round(1e3 * max(chunks), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=2_000, help="simulated customers the values are copied from")
    parser.add_argument("--chunk", type=int, default=200)
    args = parser.parse_args(argv)
    templates = profile_templates(seed=7, customers=args.customers)
    values = [(f"scale-{i:09d}", templates[i % len(templates)]) for i in range(args.profiles)]
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(Path(tmp))
        try:
            print(asyncio.run(reserve(url, values, args.chunk)))
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
