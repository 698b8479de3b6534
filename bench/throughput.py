"""Throughput harness behind ``persona bench``: four consumers, one broker, one input.

One run starts the embedded stack (Tansu + redis-server) once and measures, one after
the other and each on its own topics, consumer group and state:

(a) ``faust_passthrough``  bare Faust agent that only counts (bench/faust_passthrough.py), 1 partition
(b) ``quix_count``         Quix Streams per-user stateful count, RocksDB + changelog (bench/quix_count.py), 1 partition
(c) ``pipeline_1w``        the real pipeline: one ``persona worker`` process, 1 partition
(d) ``pipeline_2w``        the real pipeline: two ``persona worker`` processes, 2 partitions, one group

Method, per scenario:

1. The fixed input (seeded simulator clickstream, JSONL under bench/data/, generated once)
   is produced to the scenario's fresh topic *before* any consumer starts.
2. The consumer starts; throughput is the number of records over the wall-clock time
   from the first to the last processed record. For (a)/(b) the consumer process records
   both instants itself; for (c)/(d) the harness polls every worker's ``/metrics`` every
   0.1 s and counts ``persona_events_processed_total + persona_dead_letters_total +
   persona_duplicates_total`` (every input record ends in exactly one of them), so the
   window is known to about one poll interval.
3. CPU seconds per 1,000 events: CPU time (user + system, all threads) of the consumer
   process(es) over that same window — (a)/(b) ``time.process_time()`` in the process,
   (c)/(d) psutil from the harness. The broker and Redis are not counted in it; for (c)/(d)
   their CPU over the same window is reported apart (``stack_cpu_seconds_per_1000``).
4. Peak RSS: ``VmHWM`` of each consumer process from /proc at the end of the scenario.
5. Latency probe: with the consumer caught up, fresh records are produced at 50 %
   (``--probe-share``) of the rate just measured. They continue the input: the same
   customers, a simulated period later, with fresh event ids (bench/probe_input.py;
   ``--probe-input new-customers`` gives the probe of the runs before 4 December). For
   (a)/(b) the latency of a record is the wall clock when the consumer has handled it minus
   its Kafka timestamp (set by the producer when the record is appended to its batch), over
   ``--probe-seconds``. For (c)/(d) the probe first runs ``--probe-warmup`` seconds unmeasured
   (the drain's last sessions close and the cluster model steps then), then for
   ``--probe-seconds``; the latency is the worker's ``persona_end_to_end_seconds`` histogram
   (clickstream record's Kafka timestamp to its event applied by the profiles stage),
   differenced over the measured part and read with Prometheus' ``histogram_quantile``
   interpolation, so it is bucket-resolution only and does *not* include the Redis flush
   (the flusher runs every ``redis_flush_interval``). The CPU shares of the workers, the
   broker and Redis, and this process (producing the probe) over that part are reported
   with it: a worker near 1.0 was not at half of what it could do on that traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from app.embedded.stack import EmbeddedStack, ManagedProcess, free_port, wait_healthy, worker_argv
from app.runtime.settings import Settings, Topics
from app.runtime.topics_admin import ensure_topics_sync
from app.simulator import SimConfig, SimRecord, produce, read_jsonl, write_jsonl
from app.simulator.batches import batch_records
from bench.inputs import OLD_EVENTS_ENV, clickstream, simulator_config
from bench.probe_input import continuation
from bench.stats import (
    add_ratios,
    check_results,
    cpu_per_1000,
    histogram_delta,
    histogram_quantile,
    json_safe,
    profile_summary,
    self_time_by_package,
    targets,
)

REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.1
DESCRIPTIONS = {
    "faust_passthrough": "bare Faust agent, count only, 1 partition",
    "quix_count": "Quix Streams 3.28.1 per-user stateful count (RocksDB + changelog), 1 partition",
    "pipeline_1w": "persona pipeline (validate, dedupe, activity table, Redis), 1 worker, 1 partition",
    "pipeline_2w": "persona pipeline, 2 workers, 2 partitions, one consumer group",
}


@dataclass
class BenchConfig:
    events: int = 1_000_000
    seed: int = 42
    probe_seconds: float = 10.0
    #: The probe's rate as a share of the rate the scenario drained at (the target is set at 0.5).
    probe_share: float = 0.5
    #: A fixed probe rate in events/s instead of a share of each scenario's drain (``--probe-rate``):
    #: variants whose drains differ then meet the same load.
    probe_rate: float | None = None
    #: Seconds the pipeline probe runs before it is measured (``--probe-warmup``).
    probe_warmup: float = 5.0
    #: What the probe carries: ``continuation`` or ``new-customers`` (:class:`ProbePool`).
    probe_input: str = "continuation"
    scenarios: tuple[str, ...] = ("faust_passthrough", "quix_count", "pipeline_1w", "pipeline_2w")
    profile_seconds: float = 0.0
    #: Record the first worker's event loop with py-spy during each pipeline latency probe and
    #: report its longest busy stretches (bench/loop_stalls.py).
    probe_profile: bool = False
    tuning: tuple[str, ...] = ()
    #: Publisher-side batch records of at most this many events (app/simulator/batches.py) instead
    #: of a record per event, for every scenario (``--batch-events``); 0: a record per event.
    batch_events: int = 0
    #: With ``batch_events``: the flush interval, in event time (``--batch-seconds``).
    batch_seconds: float = 30.0
    # Other source trees to run the 1-worker pipeline from, alternating with this one (``--compare``).
    compare: tuple[Path, ...] = ()
    rounds: int = 1
    #: The embedded stack's broker: ``tansu`` or ``kafka`` (Apache Kafka, app/embedded/kafka_broker.py).
    broker: str = "tansu"
    data_dir: Path = REPO / "bench" / "data"
    results_dir: Path = REPO / "bench" / "results"
    run_dir: Path = REPO / ".persona" / "bench"
    command: str = ""
    stamp: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"))

    def probe_events_per_s(self, drained: float) -> float:
        """The probe's events/s for a scenario that drained at ``drained`` events/s."""
        return self.probe_rate if self.probe_rate else drained * self.probe_share

    @property
    def customers(self) -> int:
        # The simulator gives about 100 clickstream events per customer over 14 days.
        return max(100, self.events // 80)

    def sim_config(self, seed: int) -> SimConfig:
        return simulator_config(seed=seed, customers=self.customers, days=14)


# Tuning experiments (``--tuning``): the 1-worker pipeline with one change each, applied
# through the environment only (Faust reads its settings from env vars; BENCH_PATCHES
# is applied by bench/worker_variant.py). Not part of the headline figures.
TUNING_VARIANTS: dict[str, dict[str, str]] = {
    "baseline": {},
    "producer_linger=5ms": {"PRODUCER_LINGER": "0.005"},
    "producer_linger=20ms": {"PRODUCER_LINGER": "0.02"},
    "stream_buffer_maxsize=16384": {"STREAM_BUFFER_MAXSIZE": "16384"},
    "consumer_max_fetch_size=4MiB": {"CONSUMER_MAX_FETCH_SIZE": str(4 * 2**20)},
    "broker_commit_interval=5s": {"BROKER_COMMIT_INTERVAL": "5.0"},
    "metric labels cached": {"BENCH_PATCHES": "labels_cache"},
    "per-event histograms off": {"BENCH_PATCHES": "histograms_off"},
    "linger=5ms + labels cached + buffer 16384": {
        "PRODUCER_LINGER": "0.005",
        "STREAM_BUFFER_MAXSIZE": "16384",
        "BENCH_PATCHES": "labels_cache",
    },
    "linger=20ms + labels cached": {"PRODUCER_LINGER": "0.02", "BENCH_PATCHES": "labels_cache"},
    "PERSONA_PRODUCER_LINGER_SECONDS=0": {"PERSONA_PRODUCER_LINGER_SECONDS": "0"},
    "PERSONA_PRODUCER_LINGER_SECONDS=0.005": {"PERSONA_PRODUCER_LINGER_SECONDS": "0.005"},
    "PERSONA_INGEST_BATCH_SIZE=1": {"PERSONA_INGEST_BATCH_SIZE": "1"},
    # A profile-events record per event, as before packs (app/profiles/pack.py).
    "PERSONA_PROFILES_PACK_EVENTS=1": {"PERSONA_PROFILES_PACK_EVENTS": "1"},
    # The input as publisher-side batch records (like --batch-events, for this variant only), so the
    # two kinds of input compare within one run. BENCH_BATCH_* are read by the harness, not the worker.
    "batch records (50 events, 30 min flush)": {"BENCH_BATCH_EVENTS": "50", "BENCH_BATCH_SECONDS": "1800"},
    # The latency probe at other loads, and the probe of the runs before 4 December (bench/probe_input.py).
    "probe at 10 % of the rate": {"BENCH_PROBE_SHARE": "0.1"},
    "probe at 25 % of the rate": {"BENCH_PROBE_SHARE": "0.25"},
    "probe of new customers": {"BENCH_PROBE_INPUT": "new-customers"},
    # One worker over as many partitions as pipeline_2w: what the partitions cost apart from the second worker.
    "PERSONA_TOPIC_PARTITIONS=2": {"PERSONA_TOPIC_PARTITIONS": "2"},
    "PERSONA_FETCH_MAX_WAIT_MS=10": {"PERSONA_FETCH_MAX_WAIT_MS": "10"},
    "PERSONA_FETCH_MAX_WAIT_MS=10 + batch windows 2ms": {
        "PERSONA_FETCH_MAX_WAIT_MS": "10",
        "PERSONA_INGEST_BATCH_SECONDS": "0.002",
        "PERSONA_PROFILES_BATCH_SECONDS": "0.002",
    },
    # Fuller fetches: the broker waits (up to the fetch wait) for this many bytes.
    "PERSONA_FETCH_MIN_BYTES=64KiB": {"PERSONA_FETCH_MIN_BYTES": str(64 << 10)},
    "PERSONA_FETCH_MIN_BYTES=64KiB + fetch wait 25ms": {
        "PERSONA_FETCH_MIN_BYTES": str(64 << 10),
        "PERSONA_FETCH_MAX_WAIT_MS": "25",
    },
    # The same settings as the scenario, under another label: a second round within one run.
    "baseline (again)": {},
    "PERSONA_FETCH_MIN_BYTES=64KiB + fetch wait 25ms (again)": {
        "PERSONA_FETCH_MIN_BYTES": str(64 << 10),
        "PERSONA_FETCH_MAX_WAIT_MS": "25",
    },
    # Longer batch windows: at a fraction of the maximum rate, fewer and fuller batches.
    "batch windows 25ms": {"PERSONA_INGEST_BATCH_SECONDS": "0.025", "PERSONA_PROFILES_BATCH_SECONDS": "0.025"},
    "batch windows 50ms": {"PERSONA_INGEST_BATCH_SECONDS": "0.05", "PERSONA_PROFILES_BATCH_SECONDS": "0.05"},
    # Smaller batches: a batch holds the one event loop for its whole fold (~0.6 ms per event).
    "batch sizes 100": {"PERSONA_INGEST_BATCH_SIZE": "100", "PERSONA_PROFILES_BATCH_SIZE": "100"},
    "batch sizes 50 + fetch wait 10ms": {
        "PERSONA_INGEST_BATCH_SIZE": "50",
        "PERSONA_PROFILES_BATCH_SIZE": "50",
        "PERSONA_FETCH_MAX_WAIT_MS": "10",
    },
    "fetch_max_wait=50ms": {"BENCH_PATCHES": "fetch_max_wait", "BENCH_FETCH_MAX_WAIT_MS": "50"},
    "fetch_max_wait=50ms + linger=20ms": {
        "BENCH_PATCHES": "fetch_max_wait",
        "BENCH_FETCH_MAX_WAIT_MS": "50",
        "PRODUCER_LINGER": "0.02",
    },
}


def comparison_variants(checkouts: Iterable[Path], rounds: int) -> dict[str, dict[str, str]]:
    """Variants that run the 1-worker pipeline from other source trees, alternating with this one.

    The worker is ``python -m app.cli worker``; with ``PYTHONSAFEPATH`` (Python 3.11) the
    current directory is not put first on the path, so ``PYTHONPATH=<checkout>`` runs that
    checkout's code in the same virtualenv. Alternating spreads the shared machine's load
    changes over every tree, and each round reverses the order of the one before (A, B, B, A):
    the first drain after the scenario was its run's slowest in two runs of 6 December
    (docs/benchmarks.md), and a fixed order would always hand that slot to the same tree.

    >>> list(comparison_variants([Path("/tmp/base")], rounds=2))
    ['round 1: /tmp/base', 'round 1: this checkout', 'round 2: this checkout', 'round 2: /tmp/base']
    """
    variants: dict[str, dict[str, str]] = {}
    for r in range(1, rounds + 1):
        trees: list[tuple[str, dict[str, str]]] = [
            *((str(checkout), {"PYTHONPATH": str(checkout), "PYTHONSAFEPATH": "1"}) for checkout in checkouts),
            ("this checkout", {"PYTHONSAFEPATH": "1"}),
        ]
        for name, env in trees if r % 2 else reversed(trees):
            variants[f"round {r}: {name}"] = env
    return variants


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- input


def ensure_input(cfg: BenchConfig, console: Console) -> Path:
    """The input JSONL for these parameters, generated once and reused."""
    sim = cfg.sim_config(cfg.seed)
    name = f"clickstream-seed{cfg.seed}-n{cfg.events}-c{sim.customers}-d{sim.days:g}-end{sim.end:%Y%m%d}.jsonl"
    path = cfg.data_dir / name
    if path.exists():
        console.print(f"input: reusing {rel(path)}")
        return path
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    started = time.perf_counter()
    with console.status(f"generating {cfg.events:,} events (seed {cfg.seed})…"):
        written = write_jsonl(islice(clickstream(sim), cfg.events), tmp)
    if written != cfg.events:
        tmp.unlink()
        raise BenchError(f"the simulator gave only {written:,} clickstream events, {cfg.events:,} wanted")
    tmp.replace(path)
    console.print(f"input: wrote {rel(path)} in {time.perf_counter() - started:.1f} s")
    return path


class ProbePool:
    """Fresh records for the latency probes, none of whose event ids repeats the input.

    ``continuation`` (the default): the input itself, replayed a simulated period later
    by the same customers (bench/probe_input.py), so the probe carries the drain's traffic.
    ``new-customers``: a second simulator population over the input's period (the probe of
    the runs before 4 December; its events are older than the drain's last).
    """

    def __init__(self, cfg: BenchConfig, input_path: Path) -> None:
        self.cfg = cfg
        self.input_path = input_path
        self.seed = cfg.seed + 1_000_003
        self.round = 1
        self.records = self._generator()

    def _generator(self) -> Iterator[SimRecord]:
        sim = self.cfg.sim_config(self.seed)
        if self.cfg.probe_input == "continuation":
            return continuation(read_jsonl(self.input_path), dt.timedelta(days=sim.days), self.round)
        return clickstream(simulator_config(seed=sim.seed, customers=max(sim.customers, 5000), days=sim.days))

    def take(self, n: int) -> list[SimRecord]:
        taken = list(islice(self.records, n))
        while len(taken) < n:  # exhausted: the next period (or seed), with fresh event ids
            self.seed += 1
            self.round += 1
            self.records = self._generator()
            taken.extend(islice(self.records, n - len(taken)))
        return taken


@dataclass(frozen=True)
class InputRecords:
    """The records every scenario consumes, read from the input file on each pass.

    A record per event is read lazily (a 1M-event input is never held in memory); batch
    records (``--batch-events``) are built once and kept, a few per visitor.
    """

    path: Path
    batch_events: int = 0
    batch_seconds: float = 30.0

    def __iter__(self) -> Iterator[SimRecord]:
        if self.batch_events:
            return iter(_batched(self.path, self.batch_events, self.batch_seconds))
        return read_jsonl(self.path)

    def __len__(self) -> int:
        if self.batch_events:
            return len(_batched(self.path, self.batch_events, self.batch_seconds))
        return _count(self.path)


@functools.cache
def _batched(path: Path, batch_events: int, batch_seconds: float) -> list[SimRecord]:
    return list(batch_records(read_jsonl(path), batch_events, flush_seconds=batch_seconds))


@functools.cache
def _count(path: Path) -> int:
    return sum(1 for _ in read_jsonl(path))


def input_records(cfg: BenchConfig, input_path: Path) -> InputRecords:
    """The records every scenario consumes: the input's events, or their batch records (``--batch-events``)."""
    return InputRecords(input_path, cfg.batch_events, cfg.batch_seconds)


def probe_records(cfg: BenchConfig, events: list[SimRecord]) -> list[SimRecord]:
    """A probe's events as the scenario's input carries them (one record each, or batch records)."""
    return list(batch_records(events, cfg.batch_events, cfg.batch_seconds)) if cfg.batch_events else events


def retarget(records: Iterable[SimRecord], topic: str) -> Iterator[SimRecord]:
    return (SimRecord(topic, r.key, r.value, None) for r in records)


def produce_all(records: Iterable[SimRecord], bootstrap: str, rate: float | None) -> float:
    stats = asyncio.run(produce(records, bootstrap, rate))
    return stats.elapsed


# --------------------------------------------------------------------------- broker admin


async def _admin(bootstrap: str, action: Callable[[Any], Any]) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        return await action(admin)
    finally:
        await admin.close()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import NewTopic

    asyncio.run(_admin(bootstrap, lambda a: a.create_topics([NewTopic(name, partitions, 1)])))


def delete_topics_with(bootstrap: str, marker: str) -> None:
    """Delete every topic whose name contains ``marker`` (frees the in-memory broker)."""

    async def action(admin: Any) -> None:
        names = [t for t in await admin.list_topics() if marker in t]
        if names:
            await admin.delete_topics(names)

    with contextlib.suppress(Exception):
        asyncio.run(_admin(bootstrap, action))


# --------------------------------------------------------------------------- processes


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def wait(condition: Callable[[], bool], timeout: float, what: str, alive: list[ManagedProcess]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        still_waiting(alive, deadline, what, f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def still_waiting(alive: list[ManagedProcess], deadline: float, what: str, timed_out: str) -> None:
    """Raise :class:`BenchError` when a process of ``alive`` exited or ``deadline`` (monotonic) passed."""
    for p in alive:
        if not p.running:
            raise BenchError(f"{p.name} exited while waiting for {what}:\n{p.tail(40)}")
    if time.monotonic() > deadline:
        raise BenchError(timed_out)


def drain_timeout(events: int) -> float:
    """Generous limit for one drain: start-up plus 200 events/s (10x slower than measured)."""
    return 300 + events / 200


# --------------------------------------------------------------------------- (a), (b): child consumers


def run_child_scenario(
    name: str,
    module: str,
    cfg: BenchConfig,
    stack: EmbeddedStack,
    input_path: Path,
    probe: ProbePool,
    console: Console,
) -> dict[str, Any]:
    tag = f"bench-{cfg.stamp}-{name}"
    topic = f"{tag}.input"
    create_topic(stack.bootstrap, topic, 1)
    records = input_records(cfg, input_path)
    produced_s = produce_all(retarget(records, topic), stack.bootstrap, None)
    console.print(f"{name}: produced {cfg.events:,} events in {len(records):,} records in {produced_s:.1f} s")
    # These consumers count records; with batch records an events/s is their records/s times the
    # input's events per record.
    events_per_record = cfg.events / len(records)
    status_path = cfg.run_dir / f"{tag}.status.json"
    probe_path = status_path.with_suffix(".probe")
    state_dir = cfg.run_dir / tag
    env = {
        "BENCH_BOOTSTRAP": stack.bootstrap,
        "BENCH_TOPIC": topic,
        "BENCH_APP_ID": tag,
        "BENCH_STATUS": str(status_path),
        "BENCH_PROBE_FILE": str(probe_path),
        "BENCH_TOTAL": str(len(records)),
        "BENCH_BATCHED": "1" if cfg.batch_events else "",
        "BENCH_DATA_DIR": str(state_dir),
        "BENCH_STATE_DIR": str(state_dir),
        "PYTHONPATH": str(REPO),
    }
    argv = [sys.executable, "-m", module]
    if module == "bench.faust_passthrough":
        argv += ["worker", "-l", "warn"]
    proc = ManagedProcess.start(tag, argv, cfg.run_dir, env)
    try:

        def status() -> dict[str, Any]:
            try:
                loaded: dict[str, Any] = json.loads(status_path.read_text())
                return loaded
            except (OSError, ValueError):
                return {}

        wait(lambda: (status().get("count") or 0) >= len(records), drain_timeout(cfg.events), f"{name} drain", [proc])
        s = status()
        rate = (len(records) - 1) / (s["done_at"] - s["first_at"]) * events_per_record
        console.print(f"{name}: {rate:,.0f} events/s")
        n_probe = max(1, int(cfg.probe_events_per_s(rate) * cfg.probe_seconds))
        probe_input = probe_records(cfg, probe.take(n_probe))
        probe_path.write_text(str(len(probe_input)))
        records_per_s = cfg.probe_events_per_s(rate) * len(probe_input) / n_probe
        produce_all(retarget(probe_input, topic), stack.bootstrap, records_per_s)
        wait(lambda: "latency" in status(), 60 + cfg.probe_seconds, f"{name} latency probe", [proc])
        s = status()
        latency = {
            "method": "in-process: handled-at minus Kafka record timestamp",
            "rate": cfg.probe_events_per_s(rate),
            "seconds": cfg.probe_seconds,
            **s["latency"],
        }
        rss = peak_rss_mb(proc.proc.pid)
        return {
            "name": name,
            "description": DESCRIPTIONS[name],
            "events": cfg.events,
            "events_per_s": rate,
            "drain_seconds": s["done_at"] - s["first_at"],
            "cpu_seconds_per_1000": cpu_per_1000(s["cpu_seconds"], cfg.events),
            "peak_rss_mb": rss,
            "latency": latency,
            "ratio_to_quix": None,
            "processes": [{"name": tag, "peak_rss_mb": rss, "events": cfg.events}],
        }
    finally:
        proc.stop()
        delete_topics_with(stack.bootstrap, tag)
        shutil.rmtree(state_dir, ignore_errors=True)


# --------------------------------------------------------------------------- (c), (d): the pipeline


#: The samples :func:`stage_counts` reads: the drain polls ask for these alone (``/metrics?name[]=``),
#: so the worker does not format all of its metrics ten times a second for the harness.
STAGE_SAMPLES = (
    "persona_events_processed_total", "persona_dead_letters_total", "persona_duplicates_total",
    "persona_identity_forwarded_total", "persona_stage_seconds_count", "persona_end_to_end_seconds_count",
    "persona_end_to_end_seconds_bucket", "persona_event_lag_seconds_bucket",
)
STAGE_QUERY = urllib.parse.urlencode([("name[]", name) for name in STAGE_SAMPLES])


def scrape_worker(port: int) -> tuple[dict[str, float], dict[float, float]]:
    """(:func:`stage_counts` of one worker, its lag histogram buckets)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?{STAGE_QUERY}", timeout=2.0) as response:
        text = response.read().decode()
    return stage_counts(text_string_to_metric_families(text))


def stage_counts(families: Iterable[Any]) -> tuple[dict[str, float], dict[float, float]]:
    """Records each stage has seen, from one worker's parsed metrics; and the latency buckets.

    The latency is end to end (``persona_end_to_end_seconds``: record produced to its event
    applied by the profiles stage); a source tree from before that metric (``--compare``)
    only has ingest's lag (``persona_event_lag_seconds``), which is used then.

    ``ingested``: clickstream records ingest has ended (processed, dead-lettered or
    duplicate: exactly one each); ``to_profiles``: those it sent on to the profiles stage;
    ``profiles``: the events the profiles stage applied (the count of the end-to-end
    histogram, observed once per event applied); ``to_identity`` / ``identity``: the same for
    the identity stage (its records handled).

    The profiles stage's own record count (``persona_stage_seconds``) also counts its ticks
    and control records, hundreds in a drain once ticks follow each other: counting those as
    events ended the drain with events still queued, whose minute-old latencies then landed in
    the probe's histogram. It is used only for a source tree without the end-to-end histogram.
    """
    counts = dict.fromkeys(("ingested", "to_profiles", "profiles", "to_identity", "identity"), 0.0)
    profiles_records: float | None = None
    profiles_events: float | None = None
    buckets: dict[float, float] = {}
    ingest_lag: dict[float, float] = {}
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            topic = labels.get("topic", "")
            if name in ("persona_events_processed_total", "persona_dead_letters_total", "persona_duplicates_total"):
                if topic.endswith("-identity-input"):
                    counts["identity"] += value  # replays the identity stage skipped
                elif not topic.endswith("crm-profiles"):
                    counts["ingested"] += value
                    if name == "persona_events_processed_total" or labels.get("kind") == "offset":
                        counts["to_profiles"] += value
            elif name == "persona_identity_forwarded_total" and not topic.endswith("crm-profiles"):
                counts["to_identity"] += value
            elif name == "persona_stage_seconds_count" and labels.get("stage") == "identity":
                counts["identity"] += value
            elif name == "persona_stage_seconds_count" and labels.get("stage") == "profiles":
                profiles_records = (profiles_records or 0.0) + value
            elif name == "persona_end_to_end_seconds_count":
                profiles_events = (profiles_events or 0.0) + value
            elif name in ("persona_end_to_end_seconds_bucket", "persona_event_lag_seconds_bucket"):
                into = buckets if name == "persona_end_to_end_seconds_bucket" else ingest_lag
                bound = float(labels["le"])
                into[bound] = into.get(bound, 0.0) + value
    counts["profiles"] = profiles_events if profiles_events is not None else (profiles_records or 0.0)
    return counts, buckets or ingest_lag


def pipeline_done(workers: Iterable[dict[str, float]]) -> float:
    """Input records the whole pipeline is done with, over all workers.

    A record is done when ingest has ended it and the profiles stage (and the identity
    stage, if it was forwarded) has applied it too: they run behind ingest in the same
    processes, and the identity stage on one worker only, so backlogs are taken over the
    sums of all workers.

    >>> pipeline_done([
    ...     {"ingested": 60, "to_profiles": 55, "profiles": 50, "to_identity": 6, "identity": 0},
    ...     {"ingested": 40, "to_profiles": 35, "profiles": 30, "to_identity": 4, "identity": 5},
    ... ])   # 100 ingested; 10 behind in profiles, 5 in identity
    85.0
    """
    total = dict.fromkeys(("ingested", "to_profiles", "profiles", "to_identity", "identity"), 0.0)
    for counts in workers:
        for key, value in counts.items():
            total[key] += value
    behind = max(0.0, total["to_profiles"] - total["profiles"]) + max(0.0, total["to_identity"] - total["identity"])
    return total["ingested"] - behind


def scrape_all(ports: list[int]) -> tuple[float, list[float], dict[float, float]]:
    """(records done by the whole pipeline, records ingested per worker, summed lag buckets)."""
    per_worker: list[dict[str, float]] = []
    total_buckets: dict[float, float] = {}
    for port in ports:
        try:
            counts, buckets = scrape_worker(port)
        except OSError:
            counts, buckets = {}, {}
        per_worker.append(counts)
        for bound, n in buckets.items():
            total_buckets[bound] = total_buckets.get(bound, 0.0) + n
    return pipeline_done(per_worker), [c.get("ingested", 0.0) for c in per_worker], total_buckets


def pipeline_env(cfg: BenchConfig, stack: EmbeddedStack, tag: str, partitions: int, redis_db: int) -> dict[str, str]:
    topics = Topics(**{f: f"{tag}.{getattr(Topics(), f)}" for f in Topics.__dataclass_fields__})
    env = {
        **stack.env,
        "REDIS_URL": stack.redis_url.rsplit("/", 1)[0] + f"/{redis_db}",
        "PERSONA_APP_ID": tag,
        "PERSONA_TOPIC_PARTITIONS": str(partitions),
        "PERSONA_DATA_DIR": str(cfg.run_dir / tag / "data"),
        "PERSONA_LOG_LEVEL": "warning",
        # The fixed input ends on bench.inputs.END; keep it inside the validator's age limit whatever today is.
        **OLD_EVENTS_ENV,
        "PYTHONPATH": str(REPO),
    }
    env.update({f"PERSONA_TOPIC_{f.upper()}": getattr(topics, f) for f in Topics.__dataclass_fields__})
    return env


def variant_config(cfg: BenchConfig, variant_env: dict[str, str]) -> BenchConfig:
    """``cfg`` with a tuning variant's harness settings (``BENCH_BATCH_*``, ``BENCH_PROBE_*``; the worker ignores them).

    >>> v = variant_config(BenchConfig(), {"BENCH_PROBE_SHARE": "0.25", "BENCH_PROBE_INPUT": "new-customers"})
    >>> v.probe_share, v.probe_input, v.batch_events
    (0.25, 'new-customers', 0)
    """
    changes: dict[str, Any] = {}
    if "BENCH_BATCH_EVENTS" in variant_env:
        changes["batch_events"] = int(variant_env["BENCH_BATCH_EVENTS"])
        changes["batch_seconds"] = float(variant_env.get("BENCH_BATCH_SECONDS", cfg.batch_seconds))
    if "BENCH_PROBE_SHARE" in variant_env:
        changes["probe_share"] = float(variant_env["BENCH_PROBE_SHARE"])
    if "BENCH_PROBE_INPUT" in variant_env:
        changes["probe_input"] = variant_env["BENCH_PROBE_INPUT"]
    return dataclasses.replace(cfg, **changes) if changes else cfg


def run_pipeline_scenario(
    name: str,
    workers_n: int,
    cfg: BenchConfig,
    stack: EmbeddedStack,
    input_path: Path,
    probe: ProbePool | None,
    console: Console,
    redis_db: int,
    profile_seconds: float = 0.0,
    variant_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    tag = f"bench-{cfg.stamp}-{name}"
    cfg = variant_config(cfg, variant_env or {})
    env = {**pipeline_env(cfg, stack, tag, workers_n, redis_db), **(variant_env or {})}
    argv = worker_argv
    if variant_env and variant_env.get("BENCH_PATCHES"):
        argv = variant_argv
    settings = Settings.from_env(env)
    (cfg.run_dir / tag).mkdir(parents=True, exist_ok=True)
    ensure_topics_sync(settings)
    topic = settings.topics.clickstream
    records = input_records(cfg, input_path)
    produced_s = produce_all(retarget(records, topic), stack.bootstrap, None)
    console.print(f"{name}: produced {cfg.events:,} events in {len(records):,} records in {produced_s:.1f} s")
    ports = [free_port() for _ in range(workers_n)]
    workers = [
        ManagedProcess.start(f"{tag}-worker-{i + 1}", argv(port), cfg.run_dir, {**env, "PERSONA_WEB_PORT": str(port)})
        for i, port in enumerate(ports)
    ]
    pids = [w.proc.pid for w in workers]
    stack_pids = [p.proc.pid for p in stack.processes]  # broker and Redis share the cores with the workers
    spy: subprocess.Popen[bytes] | None = None
    try:
        wait_healthy(ports, 120, workers)
        first_at = first_count = first_cpu = first_stack_cpu = None
        deadline = time.monotonic() + drain_timeout(cfg.events)
        while True:
            total, _, _ = scrape_all(ports)
            now = time.time()
            if first_at is None and total > 0:
                first_at, first_count, first_cpu = now, total, cpu_seconds(pids)
                first_stack_cpu = cpu_seconds(stack_pids)
                if profile_seconds:
                    spy = start_py_spy(pids[0], profile_seconds, cfg.run_dir / f"{tag}.collapsed.txt")
            if total >= cfg.events:
                done_at, done_cpu, done_stack_cpu = now, cpu_seconds(pids), cpu_seconds(stack_pids)
                break
            still_waiting(workers, deadline, "the drain",
                          f"{name}: not drained within {drain_timeout(cfg.events):.0f} s ({total:,.0f} done)")
            time.sleep(POLL_S)
        assert first_at is not None and first_count is not None and first_cpu is not None
        assert first_stack_cpu is not None
        if done_at <= first_at:
            raise BenchError(f"{name}: drained within one poll; use more events")
        rate = (cfg.events - first_count) / (done_at - first_at)
        console.print(f"{name}: {rate:,.0f} events/s")
        result: dict[str, Any] = {
            "name": name,
            "description": DESCRIPTIONS.get(name, name),
            "events": cfg.events,
            "events_per_s": rate,
            "drain_seconds": done_at - first_at,
            "cpu_seconds_per_1000": cpu_per_1000(done_cpu - first_cpu, int(cfg.events - first_count)),
            # The broker and Redis work for the pipeline during the drain (the input was produced
            # before the workers started): with the workers' CPU, it bounds what 2 workers can
            # gain on 2 cores.
            "stack_cpu_seconds_per_1000": cpu_per_1000(done_stack_cpu - first_stack_cpu, int(cfg.events - first_count)),
            "ratio_to_quix": None,
        }
        if spy is not None:
            spy.wait(timeout=profile_seconds + 60)
            result["profile_file"] = str(cfg.run_dir / f"{tag}.collapsed.txt")
        latency: dict[str, Any] = {
            "method": "none",
            "rate": 0.0,
            "seconds": 0.0,
            "events": 0,
            "p50_ms": math.nan,
            "p99_ms": math.nan,
            "max_ms": math.nan,
        }
        if probe is not None:
            if cfg.probe_input != probe.cfg.probe_input:  # a tuning variant's own kind of probe
                probe = ProbePool(cfg, probe.input_path)
            n_probe = max(1, int(cfg.probe_events_per_s(rate) * (cfg.probe_warmup + cfg.probe_seconds)))
            probe_input = probe_records(cfg, probe.take(n_probe))
            probe_rate = cfg.probe_events_per_s(rate) * len(probe_input) / n_probe  # records/s, batch records or not
            produce_error: list[BaseException] = []

            def produce_probe() -> None:
                try:
                    produce_all(retarget(probe_input, topic), stack.bootstrap, probe_rate)
                except BaseException as exc:  # re-raised below, in the harness's thread
                    produce_error.append(exc)

            producing = threading.Thread(target=produce_probe, daemon=True)
            producing.start()
            # The warm-up is not measured: the drain's last sessions close and the model steps then.
            time.sleep(cfg.probe_warmup)
            _, _, before = scrape_all(ports)
            probe_started, probe_cpu = time.monotonic(), cpu_seconds(pids)
            probe_stack_cpu, probe_own_cpu = cpu_seconds(stack_pids), time.process_time()
            timeline = cfg.run_dir / f"{tag}-probe.speedscope.json"  # megabytes: the summary goes in the results
            probe_spy = None
            if cfg.probe_profile:
                probe_spy = start_py_spy(pids[0], cfg.probe_seconds + 1, timeline, timeline=True)
            producing.join()
            if produce_error:
                raise BenchError(f"{name}: producing the probe failed: {produce_error[0]}") from produce_error[0]
            wait(
                lambda: scrape_all(ports)[0] >= cfg.events + n_probe,
                60 + cfg.probe_seconds,
                f"{name} latency probe",
                workers,
            )
            _, _, after = scrape_all(ports)
            # How busy the workers were while the probe ran: near 1 per worker means "half the
            # maximum rate" was not half of what the workers could do on that input.
            probe_wall = time.monotonic() - probe_started
            probe_cpu_share = (cpu_seconds(pids) - probe_cpu) / probe_wall / len(pids)
            # The cores are shared: the broker, Redis and this process (producing the probe) use them too.
            probe_others = {
                "stack_cpu_share": (cpu_seconds(stack_pids) - probe_stack_cpu) / probe_wall,
                "harness_cpu_share": (time.process_time() - probe_own_cpu) / probe_wall,
            }
            stalls = loop_stalls_of(probe_spy, timeline, cfg.probe_seconds)
            delta = histogram_delta(before, after)
            latency = {
                "method": "worker histogram persona_end_to_end_seconds (clickstream record's Kafka timestamp to "
                "its event applied by the profiles stage, outputs sent), differenced over the probe, "
                "histogram_quantile interpolation; persona_event_lag_seconds (ingest only) for a tree without it",
                "rate": cfg.probe_events_per_s(rate),
                "seconds": cfg.probe_seconds,
                "warmup_seconds": cfg.probe_warmup,
                "events": int(delta[-1][1]) if delta else 0,
                "p50_ms": histogram_quantile(delta, 0.5) * 1000,
                "p99_ms": histogram_quantile(delta, 0.99) * 1000,
                "max_ms": math.nan,
                "cpu_share_per_worker": probe_cpu_share,
                **probe_others,
                "buckets": [*delta[:-1], ("+Inf", delta[-1][1])] if delta else [],
                **({"loop_stalls": stalls} if stalls is not None else {}),
            }
        _, counts, _ = scrape_all(ports)
        rss = [peak_rss_mb(w.proc.pid) for w in workers]
        processes = [
            {"name": w.name, "peak_rss_mb": r, "events": c} for w, r, c in zip(workers, rss, counts, strict=True)
        ]
        result.update(
            latency=latency,
            peak_rss_mb=max(rss),
            processes=processes,
        )
        return result
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        for w in workers:
            w.stop()
        delete_topics_with(stack.bootstrap, tag)
        shutil.rmtree(cfg.run_dir / tag, ignore_errors=True)
        with contextlib.suppress(Exception):
            import redis

            redis.Redis.from_url(env["REDIS_URL"]).flushdb()


def variant_argv(web_port: int) -> list[str]:
    return [sys.executable, "-m", "bench.worker_variant", "--web-port", str(web_port)]


def loop_stalls_of(spy: subprocess.Popen[bytes] | None, timeline: Path, seconds: float) -> dict[str, Any] | None:
    """The busy stretches of the probe's py-spy timeline (bench/loop_stalls.py), once py-spy has written it."""
    if spy is None:
        return None
    from bench.loop_stalls import report

    try:
        spy.wait(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        return {"error": "py-spy did not finish"}
    if not timeline.exists():
        return {"error": f"py-spy wrote no {timeline.name} (see its .log)"}
    summary = report(timeline, top=8)
    summary["file"] = rel(timeline)
    return summary


def start_py_spy(pid: int, seconds: float, out: Path, timeline: bool = False) -> subprocess.Popen[bytes]:
    """py-spy on ``pid``: a collapsed (raw) profile, or with ``timeline`` a speedscope file of every
    thread's samples in time order, waits in the selector included (for bench/loop_stalls.py)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, math.ceil(seconds))),
        "--rate",
        "200",
        "--nonblocking",
        "--format",
        "speedscope" if timeline else "raw",
        *(["--idle", "--threads"] if timeline else []),
        "--output",
        str(out),
    ]
    log = (out.with_suffix(".log")).open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


# --------------------------------------------------------------------------- run, report


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (results stay portable)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_at_start": os.getloadavg(),
    }


def run(cfg: BenchConfig, console: Console) -> dict[str, Any]:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    input_path = ensure_input(cfg, console)
    document: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": cfg.command,
        "broker": cfg.broker,
        "machine": machine(),
        "input": {
            "path": rel(input_path),
            "events": cfg.events,
            "bytes": input_path.stat().st_size,
            "seed": cfg.seed,
            "customers": cfg.customers,
            "probe_seconds": cfg.probe_seconds,
            "probe_share": cfg.probe_share,
            "probe_rate": cfg.probe_rate,
            "probe_warmup": cfg.probe_warmup,
            "probe_input": cfg.probe_input,
            "batch_events": cfg.batch_events,
            "batch_seconds": cfg.batch_seconds if cfg.batch_events else None,
            "records": len(input_records(cfg, input_path)),
        },
        "scenarios": {},
    }
    probe = ProbePool(cfg, input_path)
    stack = EmbeddedStack(cfg.run_dir / f"stack-{cfg.stamp}", cfg.broker)
    try:
        with console.status(f"starting the embedded broker ({cfg.broker}) and Redis…"):
            stack.start()
        console.print(f"broker {stack.bootstrap}, redis {stack.redis_url}")
        scenarios = document["scenarios"]
        for name in cfg.scenarios:
            if name == "faust_passthrough":
                scenarios[name] = run_child_scenario(
                    name, "bench.faust_passthrough", cfg, stack, input_path, probe, console
                )
            elif name == "quix_count":
                scenarios[name] = run_child_scenario(name, "bench.quix_count", cfg, stack, input_path, probe, console)
            elif name == "pipeline_1w":
                scenarios[name] = run_pipeline_scenario(name, 1, cfg, stack, input_path, probe, console, redis_db=1)
            elif name == "pipeline_2w":
                scenarios[name] = run_pipeline_scenario(name, 2, cfg, stack, input_path, probe, console, redis_db=2)
        if cfg.profile_seconds:
            console.print(f"profiling a separate 1-worker pipeline drain with py-spy for {cfg.profile_seconds:g} s")
            profiled = run_pipeline_scenario(
                "pipeline_1w_profiled",
                1,
                cfg,
                stack,
                input_path,
                None,
                console,
                redis_db=3,
                profile_seconds=cfg.profile_seconds,
            )
            collapsed = Path(profiled["profile_file"])
            kept = cfg.results_dir / f"{cfg.stamp}-pipeline-profile.txt"
            if collapsed.exists():
                shutil.copy(collapsed, kept)
                with kept.open() as lines:
                    summary = profile_summary(lines, top=25)
                with kept.open() as lines:
                    summary["by_package"] = self_time_by_package(lines)
            else:
                summary = {"self": [], "inclusive": []}
            document["profile"] = {
                "events_per_s_while_profiled": profiled["events_per_s"],
                "seconds": cfg.profile_seconds,
                "collapsed_stacks": rel(kept),
                **summary,
            }
        variants = {label: TUNING_VARIANTS[label] for label in cfg.tuning}
        variants.update(comparison_variants(cfg.compare, cfg.rounds) if cfg.compare else {})
        if variants:
            document["tuning"] = {}
        for i, (label, variant) in enumerate(variants.items()):
            console.print(f"tuning {i + 1}/{len(variants)}: pipeline_1w with {label} {variant}")
            measured = run_pipeline_scenario(
                f"tuning-{i}",
                1,
                cfg,
                stack,
                input_path,
                None if "histograms_off" in variant.get("BENCH_PATCHES", "") else probe,
                console,
                redis_db=4,
                variant_env=variant,
            )
            measured.update(description=f"pipeline_1w with {label}", env=variant)
            document["tuning"][label] = measured
    finally:
        stack.stop()
    document["machine"]["loadavg_at_end"] = os.getloadavg()
    document["ratios"] = add_ratios(document["scenarios"], document["machine"]["cores"])
    document["targets"] = targets(document["scenarios"], document["ratios"])
    problems = check_results(document)
    if problems:
        raise BenchError(f"results document is malformed: {problems}")
    out = cfg.results_dir / f"{cfg.stamp}.json"
    out.write_text(json.dumps(json_safe(document), indent=2, default=str, allow_nan=False))
    document["_json_path"] = str(out)
    document["_png_path"] = str(plot(document, cfg.results_dir / f"{cfg.stamp}.png"))
    return document


def fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def table(document: dict[str, Any]) -> Table:
    broker = document.get("broker", "tansu")
    t = Table(title=f"persona bench · {broker} · {document['input']['events']:,} events · {document['started_at']}")
    for column in ("scenario", "events/s", "x quix", "CPU s / 1k ev", "peak RSS MB", "probe rate", "p50 ms", "p99 ms"):
        t.add_column(column, justify="left" if column == "scenario" else "right")
    for name, r in document["scenarios"].items():
        lat = r["latency"]
        t.add_row(
            name,
            fmt(r["events_per_s"], ",.0f"),
            fmt(r["ratio_to_quix"], ".2f"),
            fmt(r["cpu_seconds_per_1000"], ".3f"),
            fmt(r["peak_rss_mb"], ",.0f"),
            fmt(lat.get("rate"), ",.0f"),
            fmt(lat.get("p50_ms"), ".1f"),
            fmt(lat.get("p99_ms"), ".1f"),
        )
    ratios = document["ratios"]
    t.caption = (
        f"pipeline_1w / quix = {fmt(ratios['pipeline_1w_to_quix'], '.2f')} (target ≥ 1.0) · "
        f"pipeline_2w / pipeline_1w = {fmt(ratios['pipeline_2w_to_1w'], '.2f')} (target ≥ 1.7; "
        f"at most {fmt(ratios.get('pipeline_2w_to_1w_core_bound'), '.2f')} on these cores)"
    )
    return t


def tuning_table(document: dict[str, Any]) -> Table:
    t = Table(title="tuning experiments: pipeline, 1 worker, one change each (same run, same input)")
    for column in ("variant", "events/s", "x baseline", "CPU s / 1k ev", "p50 ms", "p99 ms"):
        t.add_column(column, justify="left" if column == "variant" else "right")
    runs = document.get("tuning", {})
    base = runs.get("baseline", {}).get("events_per_s")
    for label, r in runs.items():
        rate = r["events_per_s"]
        t.add_row(
            label,
            fmt(rate, ",.0f"),
            fmt(rate / base if base else None, ".2f"),
            fmt(r["cpu_seconds_per_1000"], ".3f"),
            fmt(r["latency"].get("p50_ms"), ".1f"),
            fmt(r["latency"].get("p99_ms"), ".1f"),
        )
    return t


def plot(document: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(document["scenarios"])
    rates = [document["scenarios"][n]["events_per_s"] for n in names]
    p50 = [document["scenarios"][n]["latency"]["p50_ms"] for n in names]
    p99 = [document["scenarios"][n]["latency"]["p99_ms"] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bars = left.bar(names, rates, color="#4c72b0")
    for bar, name in zip(bars, names, strict=True):
        r = document["scenarios"][name]["ratio_to_quix"]
        left.annotate(
            f"{bar.get_height():,.0f}" + (f"\n{r:.2f}x quix" if r is not None else ""),
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    left.set_ylim(0, max(rates) * 1.2)
    left.set_ylabel("events/s (pre-loaded topic, first→last record)")
    left.set_title(f"throughput, {document['input']['events']:,} events")
    left.tick_params(axis="x", labelrotation=15)
    x = range(len(names))
    right.bar([i - 0.2 for i in x], p50, width=0.4, label="p50")
    right.bar([i + 0.2 for i in x], p99, width=0.4, label="p99")
    right.axhline(50, color="red", linestyle="--", linewidth=1, label="p99 target 50 ms")
    right.set_xticks(list(x), names, rotation=15)
    right.set_yscale("log")
    right.set_ylabel("ms, produced → handled")
    right.set_title("latency at 50% of each scenario's max rate")
    right.legend(fontsize=8)
    fig.suptitle(f"{document['machine']['cores']} cores · {document['machine']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
