"""State at scale: memory per profile, disk per profile and recovery time of the profiles table.

Builds realistic ``profiles`` table values (seeded simulator traffic folded by the real
:func:`app.profiles.state.apply_event`, one value per true customer), copies them
under ``--profiles`` distinct profile ids into the table's changelog topic exactly as
the profiles stage writes it (JSON key and value, the key's partition by Kafka's default
partitioner, each value after its tick-index key: tables/due_index.py), then starts
``persona worker`` on that state and measures, per store:

* **recovery to ready**: worker start until ``/health`` answers 200 (Faust has read
  every changelog partition into the table);
* **RSS per profile**: worker RSS when ready minus the RSS of a worker with an empty
  table (measured in the same run), divided by the number of profiles;
* **RSS per profile at work**: the same, read 15 s after 300 new events were sent to the
  recovered worker (its first ticks have run, the stored sessions start closing);
* **disk per profile** (``rocksdb://``): size of the worker's data directory / profiles;
* **restart to ready** (``rocksdb://`` only): a second worker on the same data directory,
  which reads only what its local RocksDB does not already hold.

The changelog lives in the embedded broker's memory, so the largest run is bounded by
this machine's RAM (about 5 KB of JSON per simulated profile, plus the broker's copy).

    .venv/bin/python -m bench.state_scale [--profiles 100000] [--stores memory,compact,rocksdb] [--partitions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from app.embedded.stack import EmbeddedStack, ManagedProcess, embedded_stack, free_port, wait_healthy, worker_argv
from app.events.validation import Event, Validator
from app.profiles import state as profile_stage
from app.profiles.fold import tick_due_at
from app.runtime.settings import Settings
from app.runtime.topics_admin import ensure_topics_sync
from bench.inputs import END, clickstream, simulator_config
from bench.lookup_latency import produce
from bench.pipeline_accuracy import metric_totals
from bench.stats import histogram_delta, histogram_quantile
from bench.throughput import REPO, pipeline_env, scrape_worker
from tables.due_index import due_key, indexed_key

RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class ScaleConfig:
    profiles: int = 100_000
    stores: tuple[str, ...] = ("memory", "compact", "rocksdb")
    partitions: int = 4
    seed: int = 11
    template_customers: int = 2_000
    #: rocksdb-direct: seconds of RSS sampling after half the traffic is applied (the ticks go on
    #: closing the stored profiles' sessions meanwhile).
    observe_s: float = 0.0
    run_dir: Path = REPO / ".persona" / "bench-state"
    stamp: str = ""
    #: "open": the templates as their last event left them, every session open (so every stored
    #: profile is overdue at the first tick: a worker back from a long outage). "settled": ticked
    #: SETTLED_DAYS on, sessions closed and timed rules evaluated (a table at rest, nothing due).
    templates: str = "open"
    #: rocksdb-direct: clickstream events a second sent while observed (new traffic during the drain).
    trickle_rate: float = 10.0
    #: The workers' log level: "info" logs Faust's recovery steps with their times (in the run's ``*.log`` files).
    worker_log_level: str = "warning"


SETTLED_DAYS = 60


def settle(value: dict[str, Any], profile_id: str, horizon: float) -> dict[str, Any]:
    """``value`` after the ticks that fall due before ``horizon``: sessions closed, timed rules evaluated."""
    while (at := profile_stage.next_tick_at(value)) is not None and at < horizon:
        value, _ = profile_stage.tick(value, at + 1.0, profile_id)
    return value


def profile_templates(seed: int, customers: int, settled: bool = False) -> list[dict[str, Any]]:
    """One profiles-table value per simulated customer, folded from its valid events in order."""
    sim = simulator_config(seed=seed, customers=customers, days=14)
    validator = Validator.default()
    now = END.timestamp()
    values: dict[str, dict[str, Any]] = {}
    for offset, record in enumerate(clickstream(sim)):
        event = validator.clickstream(record.value, now=now)
        if not isinstance(event, Event) or record.truth is None:
            continue
        customer = record.truth["customer_id"]
        values[customer], _ = profile_stage.apply_event(values.get(customer), event, offset, 0, customer)
    if settled:
        horizon = now + SETTLED_DAYS * 86_400
        return [settle(value, customer, horizon) for customer, value in values.items()]
    return list(values.values())


class TableRecord(NamedTuple):
    """One record of the profiles table in the changelog's wire format, with its partition."""

    partition: int
    key: bytes
    value: bytes
    is_profile: bool  # False: a tick-index key (tables/due_index.py)


def changelog_records(templates: list[dict[str, Any]], n: int, partitions: int) -> Iterator[TableRecord]:
    """``n`` profiles cycling over the templates, as the profiles stage writes them: each value in
    the partition of its key (the murmur2 of the raw profile id, as Faust writes a table update
    to the partition of the input record) and saying so, after its tick-index key; each partition
    first gets its index marker."""
    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))
    for p in all_partitions:
        yield TableRecord(p, orjson.dumps(indexed_key(p)), b"1.0", False)
    placed = [[{**t, "partition": p} for t in templates] for p in all_partitions]
    encoded = [[orjson.dumps(v) for v in values] for values in placed]
    # A template's due time is the same under every id: computed once, not per profile.
    due = [[tick_due_at(v, p) for v in values] for p, values in enumerate(placed)]
    for i in range(n):
        profile_id = f"scale-{i:09d}"
        p = partitioner(profile_id.encode(), all_partitions, all_partitions)
        t = i % len(templates)
        at = due[p][t]
        if at is not None:
            yield TableRecord(p, orjson.dumps(due_key(p, at, profile_id)), orjson.dumps(at), False)
        yield TableRecord(p, orjson.dumps(profile_id), encoded[p][t], True)


async def _produce(bootstrap: str, topic: str, records: Iterator[TableRecord]) -> int:
    """Send ``records`` to the changelog; return how many profiles they hold."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=1 << 24)
    await producer.start()
    profiles = 0
    try:
        pending: list[asyncio.Future[Any]] = []
        for record in records:
            pending.append(await producer.send(topic, value=record.value, key=record.key, partition=record.partition))
            profiles += record.is_profile
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return profiles


async def raw_read_seconds(bootstrap: str, topic: str, partitions: int, n: int) -> float:
    """Seconds a bare aiokafka consumer takes to read the ``n`` changelog records (the broker's share of recovery)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, got = time.monotonic(), 0
        while got < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches and time.monotonic() - started > 60 + n / 1000:
                raise RuntimeError(f"read {got} of {n} changelog records")
            got += sum(len(records) for records in batches.values())
        return time.monotonic() - started
    finally:
        await consumer.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


#: Seconds a recovered worker runs with traffic before its RSS "at work" is read (three ticks).
WORKING_SECONDS = 15.0


def start_and_time(
    name: str, env: dict[str, str], run_dir: Path, timeout: float = 120.0
) -> tuple[ManagedProcess, float, float]:
    """Start one worker; return it, seconds to ready, and its RSS (MB) once ready and settled."""
    Path(env["PERSONA_DATA_DIR"]).mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    port = free_port()
    started = time.monotonic()
    worker = ManagedProcess.start(name, worker_argv(port), run_dir, {**env, "PERSONA_WEB_PORT": str(port)})
    wait_healthy([port], timeout, [worker])
    ready_s = time.monotonic() - started
    time.sleep(3.0)  # let start-up garbage be collected before reading RSS
    return worker, ready_s, rss_mb(worker.proc.pid)


def measure_store(store: str, cfg: ScaleConfig, stack: EmbeddedStack, templates: list[dict[str, Any]],
                  redis_db: int) -> dict[str, Any]:
    tag = f"state-{cfg.stamp}-{store}"
    data_dir = cfg.run_dir / tag / "data"
    env = {**pipeline_env_for(cfg, stack, tag, redis_db), "PERSONA_TABLE_STORE": f"{store}://",
           "PERSONA_DATA_DIR": str(data_dir)}
    settings = Settings.from_env(env)
    ensure_topics_sync(settings)
    changelog = f"{settings.app_id}-profiles-changelog"

    # Empty-table baseline in the same run: the same worker, the same topics, no profiles yet.
    baseline, baseline_ready_s, baseline_rss = start_and_time(f"{tag}-baseline", env, cfg.run_dir)
    baseline.stop()
    shutil.rmtree(data_dir, ignore_errors=True)

    produced_at = time.monotonic()
    sent = asyncio.run(_produce(stack.bootstrap, changelog, changelog_records(templates, cfg.profiles, cfg.partitions)))
    produce_s = time.monotonic() - produced_at
    raw_s = asyncio.run(raw_read_seconds(stack.bootstrap, changelog, cfg.partitions, sent))

    # Generous: start-up plus 1,000 values/s (a third of what recovery measured).
    limit = 120.0 + sent / 1000
    worker, ready_s, rss = start_and_time(f"{tag}-recover", env, cfg.run_dir, limit)
    try:
        # At work: traffic applied, the first ticks run (which build a store's in-memory tick index and,
        # every template being overdue, start closing sessions), the LRU of compact:// filling.
        first = first_traffic(cfg, stack, settings, worker, rss)
        time.sleep(WORKING_SECONDS)
        rss_working = rss_mb(worker.proc.pid)
    finally:
        worker.stop()
    result: dict[str, Any] = {
        "store": f"{store}://",
        "profiles": sent,
        "changelog_produce_s": round(produce_s, 1),
        "raw_consumer_read_s": round(raw_s, 2),
        "recovery_to_ready_s": round(ready_s, 1),
        "empty_table_to_ready_s": round(baseline_ready_s, 1),
        "rss_mb": round(rss, 1),
        "baseline_rss_mb": round(baseline_rss, 1),
        "rss_bytes_per_profile": round((rss - baseline_rss) * 2**20 / sent),
        "half_of_traffic_applied_s": None if first.half_applied_s is None else round(first.half_applied_s, 1),
        f"rss_mb_{WORKING_SECONDS:g}_s_after_traffic": round(rss_working, 1),
        "rss_bytes_per_profile_at_work": round((rss_working - baseline_rss) * 2**20 / sent),
    }
    if store == "rocksdb":
        disk = dir_mb(data_dir)
        result["disk_mb"] = round(disk, 1)
        result["disk_bytes_per_profile"] = round(disk * 2**20 / sent)
        again, restart_s, restart_rss = start_and_time(f"{tag}-restart", env, cfg.run_dir, limit)
        again.stop()
        result["restart_to_ready_s"] = round(restart_s, 1)
        result["restart_rss_mb"] = round(restart_rss, 1)
    return result


def write_rocksdb_directly(data_dir: Path, partitions: int, records: Iterator[TableRecord]) -> int:
    """Write ``records`` into the ``profiles`` RocksDB databases a worker left under ``data_dir``.

    What a worker holds after a long life on its own disk, without a changelog of that size in
    the embedded broker (which keeps topics in memory). Each database gets Faust's persisted
    offset 0, so the next worker reads nothing from the (empty) changelog.
    """
    import rocksdict
    from faust.stores.rocksdb import RocksDBOptions
    from faust.stores.rocksdb import Store as FaustRocksDBStore

    from tables.bulk_recovery import WITHOUT_LOG

    paths = {int(p.name.rsplit("-", 1)[1].removesuffix(".db")): p for p in data_dir.rglob("profiles-*.db")}
    if sorted(paths) != list(range(partitions)):
        raise RuntimeError(
            f"expected profiles databases for {partitions} partitions under {data_dir}, found {sorted(paths)}"
        )
    dbs = {p: RocksDBOptions(use_rocksdict=True).open(path) for p, path in paths.items()}
    batches = {p: rocksdict.WriteBatch(raw_mode=True) for p in dbs}
    written = 0
    for record in records:
        batches[record.partition].put(record.key, record.value)
        if not record.is_profile:
            continue
        written += 1
        if written % 5_000 == 0:
            for p, batch in batches.items():
                dbs[p].write(batch, WITHOUT_LOG)
            batches = {p: rocksdict.WriteBatch(raw_mode=True) for p in dbs}
        if written % 1_000_000 == 0:
            print(f"  {written:,} values written")
    for p, batch in batches.items():
        batch.put(FaustRocksDBStore.offset_key, b"0")
        dbs[p].write(batch, WITHOUT_LOG)
        dbs[p].flush(True)
        dbs[p].close()
    return written


class Observed(NamedTuple):
    sent: int
    peak_rss_mb: float
    rss_mb: list[float]  # one sample a second


async def trickle(bootstrap: str, records: list[tuple[str, bytes, bytes]], rate: float, seconds: float,
                  pid: int) -> Observed:
    """For ``seconds``, send ``rate`` of ``records`` a second (new traffic while a backlog drains) and
    sample the worker's RSS every second."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    sent, samples = 0, []
    began = time.monotonic()
    try:
        while (elapsed := time.monotonic() - began) < seconds:
            due = min(len(records), int(elapsed * rate))
            for topic, key, value in records[sent:due]:
                await producer.send(topic, key=key, value=value)
            sent = max(sent, due)
            samples.append(rss_mb(pid))
            await asyncio.sleep(1.0)
        await producer.flush()
    finally:
        await producer.stop()
    return Observed(sent, max(samples, default=0.0), samples)


def end_to_end_buckets(port: int, attempts: int = 30) -> dict[float, float] | None:
    """The worker's end-to-end histogram; ``None`` if it answered none of ``attempts`` scrapes (loop held)."""
    for _ in range(attempts):
        try:
            return scrape_worker(port)[1]
        except OSError:
            continue
    return None


def trickle_latency(buckets: list[tuple[float, float]]) -> dict[str, Any]:
    """End-to-end latency of the events applied while observed (from the worker's histogram)."""
    if not buckets or buckets[-1][1] <= 0:
        return {"trickle_events_applied": 0}
    return {
        "trickle_events_applied": int(buckets[-1][1]),
        "trickle_end_to_end_p50_s": round(histogram_quantile(buckets, 0.50), 3),
        "trickle_end_to_end_p99_s": round(histogram_quantile(buckets, 0.99), 3),
    }


class FirstTraffic(NamedTuple):
    port: int
    sent: int
    later: list[tuple[str, bytes, bytes]]  # more of the same simulator traffic, for a trickle
    half_applied_s: float | None
    peak_rss_mb: float
    unanswered: int  # metric scrapes the worker did not answer in 2 s (its event loop held)


def first_traffic(cfg: ScaleConfig, stack: EmbeddedStack, settings: Settings, worker: ManagedProcess,
                  rss: float) -> FirstTraffic:
    """Send 300 clickstream events of a few new customers to a ready worker; wait until half are applied."""
    wanted = 300 + int(cfg.observe_s * cfg.trickle_rate)  # 20 customers' day is about 300 events
    sim = simulator_config(seed=cfg.seed + 1, customers=20 * (1 + wanted // 250), days=1)
    clicks = [(settings.topics.clickstream, r.key, r.value) for r in clickstream(sim)]
    traffic, later = clicks[:300], clicks[300:]
    asyncio.run(produce(stack.bootstrap, traffic))
    sent_at, peak = time.monotonic(), rss
    argv = [str(a) for a in cast(list[Any], worker.proc.args)]
    port = int(argv[argv.index("--web-port") + 1])
    processed_s = None
    unanswered = 0
    while time.monotonic() - sent_at < 1_200:
        peak = max(peak, rss_mb(worker.proc.pid))
        try:
            applied = sum(metric_totals([port], ["persona_end_to_end_seconds_count"]).values())
        except OSError:  # socket timeouts and refused connections alike
            unanswered += 1
            continue
        if applied >= len(traffic) * 0.5:
            processed_s = time.monotonic() - sent_at
            break
        time.sleep(1.0)
    return FirstTraffic(port, len(traffic), later, processed_s, peak, unanswered)


def measure_direct_rocksdb(cfg: ScaleConfig, stack: EmbeddedStack, templates: list[dict[str, Any]],
                           redis_db: int) -> dict[str, Any]:
    """``rocksdb://`` with ``cfg.profiles`` values on local disk: restart to ready, RSS, then a little traffic.

    The traffic (simulator events of a few new customers) is the first the worker applies, with
    every stored profile due (the templates' sessions are open): its ticks then close them,
    at most the tick limit per partition per tick. The RSS while it does is the figure for a
    worker at work.
    """
    tag = f"state-{cfg.stamp}-rocksdb-direct"
    data_dir = cfg.run_dir / tag / "data"
    env = {**pipeline_env_for(cfg, stack, tag, redis_db), "PERSONA_TABLE_STORE": "rocksdb://",
           "PERSONA_DATA_DIR": str(data_dir)}
    settings = Settings.from_env(env)
    ensure_topics_sync(settings)
    baseline, baseline_ready_s, baseline_rss = start_and_time(f"{tag}-baseline", env, cfg.run_dir)
    baseline.stop()
    began = time.monotonic()
    records = changelog_records(templates, cfg.profiles, cfg.partitions)
    written = write_rocksdb_directly(data_dir, cfg.partitions, records)
    write_s = time.monotonic() - began
    disk = dir_mb(data_dir)
    worker, ready_s, rss = start_and_time(f"{tag}-restart", env, cfg.run_dir, 600.0)
    try:
        first = first_traffic(cfg, stack, settings, worker, rss)
        port, later, peak, unanswered = first.port, first.later, first.peak_rss_mb, first.unanswered
        e2e_before = end_to_end_buckets(port)
        observed = asyncio.run(trickle(stack.bootstrap, later, cfg.trickle_rate, max(3.0, cfg.observe_s),
                                       worker.proc.pid))
        peak = max(peak, observed.peak_rss_mb)
        e2e_after = end_to_end_buckets(port)
        trickle_buckets = [] if e2e_before is None or e2e_after is None else histogram_delta(e2e_before, e2e_after)
        sessions_closed = None
        for _ in range(30):
            try:
                sessions_closed = sum(metric_totals([port], ["persona_sessions_closed_total"]).values())
                break
            except OSError:
                unanswered += 1
        rss_end = rss_mb(worker.proc.pid)
    finally:
        worker.stop()
    return {
        "store": "rocksdb:// (values written to its local databases)",
        "profiles": written,
        "direct_write_s": round(write_s, 1),
        "disk_mb": round(disk, 1),
        "disk_bytes_per_profile": round(disk * 2**20 / written),
        "empty_table_to_ready_s": round(baseline_ready_s, 1),
        "baseline_rss_mb": round(baseline_rss, 1),
        "restart_to_ready_s": round(ready_s, 1),
        "restart_rss_mb": round(rss, 1),
        "traffic_events": first.sent,
        "half_of_traffic_applied_s": None if first.half_applied_s is None else round(first.half_applied_s, 1),
        "peak_rss_mb_with_traffic": round(peak, 1),
        "observed_s_after_half_applied": max(3.0, cfg.observe_s),
        "sessions_closed_when_observed": None if sessions_closed is None else int(sessions_closed),
        "metric_scrapes_unanswered": unanswered,
        "trickle_events_sent": observed.sent,
        "trickle_events_per_s": cfg.trickle_rate,
        **trickle_latency(trickle_buckets),
        "rss_mb_every_10_s": observed.rss_mb[::10],
        "rss_mb_when_observed": round(rss_end, 1),
    }


def pipeline_env_for(cfg: ScaleConfig, stack: EmbeddedStack, tag: str, redis_db: int) -> dict[str, str]:
    from bench.throughput import BenchConfig

    env = pipeline_env(BenchConfig(run_dir=cfg.run_dir), stack, tag, cfg.partitions, redis_db)
    env["PERSONA_TOPIC_PARTITIONS"] = str(cfg.partitions)
    env["PERSONA_LOG_LEVEL"] = cfg.worker_log_level
    return env


def run(cfg: ScaleConfig) -> dict[str, Any]:
    started = time.monotonic()
    templates = profile_templates(cfg.seed, cfg.template_customers, settled=cfg.templates == "settled")
    sizes = sorted(len(orjson.dumps(t)) for t in templates)
    print(f"{len(templates):,} template profiles in {time.monotonic() - started:.1f} s; JSON bytes per value: "
          f"mean {sum(sizes) / len(sizes):,.0f}, median {sizes[len(sizes) // 2]:,}, max {sizes[-1]:,}")
    document: dict[str, Any] = {
        "command": "python -m bench.state_scale " + " ".join(
            [f"--profiles {cfg.profiles}", f"--stores {','.join(cfg.stores)}", f"--partitions {cfg.partitions}",
             f"--template-customers {cfg.template_customers}", f"--templates {cfg.templates}",
             f"--observe-seconds {cfg.observe_s:g}", f"--trickle-rate {cfg.trickle_rate:g}"]),
        "stamp": cfg.stamp,
        "template_json_bytes": {"mean": round(sum(sizes) / len(sizes)), "median": sizes[len(sizes) // 2],
                                "max": sizes[-1]},
        "results": [],
    }
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    with embedded_stack(cfg.run_dir / f"stack-{cfg.stamp}") as stack:
        for db, store in enumerate(cfg.stores, start=1):
            if store == "rocksdb-direct":
                result = measure_direct_rocksdb(cfg, stack, templates, redis_db=db)
            else:
                result = measure_store(store, cfg, stack, templates, redis_db=db)
            print(orjson.dumps(result).decode())
            document["results"].append(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{cfg.stamp}-state-scale.json"
    out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    print(f"wrote {out.relative_to(REPO)}")
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument(
        "--stores",
        default="memory,compact,rocksdb",
        help="comma-separated: memory, compact, rocksdb, rocksdb-direct (values written to the worker's "
        "local RocksDB, not the changelog: for sizes the embedded broker cannot hold)",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--template-customers", type=int, default=2_000)
    parser.add_argument("--templates", choices=("open", "settled"), default="open",
                        help="open: every stored session open and overdue (a worker back from an outage); "
                        f"settled: ticked {SETTLED_DAYS} days on, nothing due (a table at rest)")
    parser.add_argument("--observe-seconds", type=float, default=0.0,
                        help="rocksdb-direct: keep sampling RSS this long after half the traffic is applied")
    parser.add_argument("--trickle-rate", type=float, default=10.0,
                        help="rocksdb-direct: clickstream events a second sent while observed (their end-to-end "
                        "latency is reported)")
    parser.add_argument("--worker-log-level", default="warning",
                        help="the workers' log level; info logs Faust's recovery steps (files in the run directory)")
    args = parser.parse_args(argv)
    stores = tuple(s.strip() for s in args.stores.split(",") if s.strip())
    unknown = set(stores) - {"memory", "compact", "rocksdb", "rocksdb-direct"}
    if unknown:
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run(ScaleConfig(profiles=args.profiles, stores=stores, partitions=args.partitions,
                    template_customers=args.template_customers, observe_s=args.observe_seconds, stamp=stamp,
                    templates=args.templates, worker_log_level=args.worker_log_level,
                    trickle_rate=args.trickle_rate))


if __name__ == "__main__":
    main()
