"""Latency of the serving endpoints: ``GET /v1/profiles/{id}`` and ``GET /v1/profiles/lookup``.

Starts the embedded stack (Tansu broker, redis-server) and one worker, loads simulator
traffic (``--events`` records, seeded) through the broker, waits until the worker has
applied it and Redis serves every profile, then sends ``--requests`` GETs per endpoint,
one at a time over one keep-alive loopback connection, cycling through the served
profiles (by id) and the e-mail addresses seen in the traffic (by lookup). Reports
p50/p95/p99 and requests/s per endpoint. Everything it starts is stopped at the end.

    .venv/bin/python -m bench.lookup_latency [--events 5000] [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path

import orjson
import redis

from bench import inputs
from bench.harness import running_pipeline

APP_ID = "bench-lookup"


async def produce(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key, value=value) for topic, key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def traffic(n: int, seed: int) -> tuple[list[tuple[str, bytes, bytes]], list[str]]:
    """The simulator's records and the e-mail addresses they carry (for lookups)."""
    records, emails = [], set()
    for record in inputs.records(inputs.simulator_config(seed=seed, customers=max(50, n // 20), events=n)):
        records.append((record.topic, record.key, record.value))
        try:
            doc = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            continue
        email = (doc.get("properties", {}).get("traits") or {}).get("email") if isinstance(doc, dict) else None
        if isinstance(email, str):
            emails.add(email)
    return records, sorted(emails)


def metric(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def wait_settled(port: int, client: redis.Redis, timeout: float) -> None:
    """Until the processed count and the number of served profiles stop moving for 3 s."""
    deadline, last, stable_since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        now = (metric(port, "persona_events_processed_total"), client.dbsize())
        if now != last:
            last, stable_since = now, time.monotonic()
        elif now[0] > 0 and time.monotonic() - stable_since > 3:
            return
        time.sleep(0.5)
    raise SystemExit(f"the worker did not settle within {timeout:.0f} s (last: {last})")


def measure(port: int, paths: list[str], n: int, token: str) -> tuple[list[float], float, dict[int, int]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        conn.request("GET", paths[i % len(paths)], headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - t0)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    elapsed = time.perf_counter() - started
    conn.close()
    return latencies, elapsed, statuses


def report(name: str, latencies: list[float], elapsed: float, statuses: dict[int, int]) -> None:
    q = statistics.quantiles([x * 1000 for x in latencies], n=100, method="inclusive")
    print(f"{name:32s} n={len(latencies):6d}  p50 {q[49]:6.2f} ms  p95 {q[94]:6.2f} ms  p99 {q[98]:6.2f} ms"
          f"  {len(latencies) / elapsed:7.0f} req/s  statuses {statuses}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="simulator records to load")
    parser.add_argument("--requests", type=int, default=5000, help="GETs per endpoint (after 200 warm-up GETs)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    records, emails = traffic(args.events, args.seed)
    extra_env = {"PERSONA_READ_RATE": "0",  # latency unthrottled: no per-key rate limit
                 **inputs.OLD_EVENTS_ENV}  # the input ends on bench.inputs.END
    with tempfile.TemporaryDirectory() as tmp, running_pipeline(Path(tmp), APP_ID, extra_env=extra_env) as pipeline:
        os.environ.update(pipeline.env)
        stack, port, worker = pipeline.stack, pipeline.ports[0], pipeline.workers[0]
        loaded = time.perf_counter()
        asyncio.run(produce(stack.bootstrap, records))
        client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        wait_settled(port, client, timeout=600)
        print(f"loaded {len(records)} records in {time.perf_counter() - loaded:.1f} s; "
              f"{client.dbsize()} Redis keys")
        profile_ids = sorted(
            k.removeprefix("persona:profile:") for k in client.scan_iter("persona:profile:*")
            if not k.endswith(":identity")
        )
        by_id = [f"/v1/profiles/{pid}" for pid in profile_ids]
        by_email = [f"/v1/profiles/lookup?{urllib.parse.urlencode({'type': 'email', 'value': e})}" for e in emails]
        print(f"{len(profile_ids)} profiles served, {len(emails)} e-mail addresses in the traffic")
        for name, paths in (("GET /v1/profiles/{id}", by_id), ("GET /v1/profiles/lookup (email)", by_email)):
            measure(port, paths, 200, stack.api_key.token)  # warm-up
            report(name, *measure(port, paths, args.requests, stack.api_key.token))
        print(json.dumps({"worker_alive": worker.running}))


if __name__ == "__main__":
    main()
