"""The ``simulate`` command and :func:`produce`: clear errors, clean stops, exact delivery.

No broker is needed: :func:`produce` is driven with a fake producer, and the
command is exercised in its file modes and its error paths.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from click.testing import CliRunner

from app.simulator import ProduceError, SimConfig, SimRecord, iter_records, produce
from app.simulator.command import simulate
from app.simulator.jsonl import read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
END = datetime(2024, 3, 1, tzinfo=UTC)
SMALL = ["--seed", "3", "--customers", "30", "--end", "2024-03-01T00:00:00Z"]


def _run(*args: str) -> Any:
    return CliRunner().invoke(simulate, list(args), catch_exceptions=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---------------------------------------------------------------- command


def test_help_explains_the_modes() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    for word in ("--output", "--replay", "--truth", "--rate", "--duration", "KAFKA_BOOTSTRAP_SERVERS",
                 "Examples"):
        assert word in result.output


def test_output_writes_the_library_stream_and_ground_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "run.jsonl", tmp_path / "truth"
    result = _run(*SMALL, "--output", str(out), "--truth", str(truth))
    assert result.exit_code == 0, result.output
    expected = tmp_path / "expected.jsonl"
    n = write_jsonl(iter_records(SimConfig(seed=3, customers=30, end=END)), expected)
    assert out.read_bytes() == expected.read_bytes()
    assert re.fullmatch(rf"simulate: wrote {n:,} records \(clickstream [\d,]+, crm-profiles [\d,]+; "
                        rf"malformed [\d,]+, duplicates [\d,]+\) in [\d.]+ s, [\d,]+ records/s to {out}; "
                        rf"ground truth in {truth}\n", result.output), result.output
    assert {p.name for p in truth.iterdir()} == {"customers.jsonl", "events.jsonl", "sessions.jsonl",
                                                 "crm.jsonl", "malformed.jsonl"}


def test_output_to_stdout_keeps_the_summary_on_stderr() -> None:
    result = CliRunner().invoke(simulate, [*SMALL, "--events", "25", "--output", "-"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 25
    assert result.stderr.startswith("simulate: wrote 25 records")


@pytest.mark.parametrize(("args", "message"), [
    (["--replay", "missing.jsonl"], "does not exist"),
    (["--replay", "{file}", "--seed", "4"], "--seed shape generated traffic"),
    (["--replay", "{file}", "--output", "x.jsonl"], "cannot be combined"),
    (["--replay", "{file}", "--truth", "t"], "use --truth with --output"),
    (["--rate", "10", "--output", "x.jsonl"], "--rate paces sending to Kafka"),
    (["--end", "yesterday"], "not an RFC 3339 date-time"),
    (["--customers", "0"], "x>=1"),
    (["--malformed-share", "1"], "0<=x<1"),
    (["--bootstrap", "localhost"], "must be host:port"),
])
def test_user_errors_are_usage_errors_without_traceback(tmp_path: Path, args: list[str],
                                                         message: str) -> None:
    good = tmp_path / "good.jsonl"
    write_jsonl([SimRecord("clickstream", b"a", b"{}")], good)
    result = CliRunner().invoke(simulate, [a.format(file=good) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_bad_replay_line_is_reported_before_anything_is_sent(tmp_path: Path) -> None:
    replay = tmp_path / "bad.jsonl"
    replay.write_text('{"topic": "clickstream", "key": "a", "value": "{}"}\n{"topic": "clickstream"\n')
    # The broker address is unreachable: reaching it would give a different error.
    result = CliRunner().invoke(simulate, ["--replay", str(replay), "--bootstrap",
                                           f"127.0.0.1:{_closed_port()}"])
    assert result.exit_code == 1
    assert f"cannot replay: {replay}, line 2: not valid JSON" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_broker_is_a_one_line_error() -> None:
    result = CliRunner().invoke(simulate, [*SMALL, "--bootstrap", f"kafka://127.0.0.1:{_closed_port()}"])
    assert result.exit_code == 1
    assert "Error: cannot connect to Kafka at 127.0.0.1:" in result.output
    assert "Traceback" not in result.output


def test_an_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(simulate, [*SMALL, "--output", str(tmp_path / "no" / "such" / "x.jsonl")])
    assert result.exit_code == 1
    assert "cannot write" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_file_output_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "long.jsonl"
    # Ten years of 3,000 customers: far more than the test waits for.
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.simulator", "--customers", "3000", "--days", "3650",
         "--end", "2024-03-01T00:00:00Z", "--output", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size > 2_000_000) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    match = re.search(r"wrote ([\d,]+) records .*\(stopped early\)", stdout)
    assert match, stdout
    assert sum(1 for _ in read_jsonl(out)) == int(match.group(1).replace(",", "")) > 1000


# ---------------------------------------------------------------- produce


class FakeBatch:
    def __init__(self, limit: int) -> None:
        self.items: list[tuple[bytes | None, bytes | None]] = []
        self.limit = limit
        self.closed = False

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None) -> Any:
        if self.closed or len(self.items) >= self.limit:
            self.closed = True
            return None
        self.items.append((key, value))
        return object()

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Delivers batches instantly into ``delivered``; can fail to start or to deliver."""

    def __init__(self, servers: str, *, fail_start: bool = False, fail_delivery: bool = False) -> None:
        self.servers = servers
        self.fail_start = fail_start
        self.fail_delivery = fail_delivery
        self.delivered: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
        self.stopped = False

    async def start(self) -> None:
        if self.fail_start:
            raise KafkaConnectionError("Unable to bootstrap")

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def create_batch(self) -> FakeBatch:
        return FakeBatch(limit=64)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        future = asyncio.get_running_loop().create_future()
        if self.fail_delivery:
            future.set_exception(KafkaError("broker said no"))
        else:
            self.delivered[(topic, partition)].extend(batch.items)
            future.set_result(None)
        return future

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.delivered.values())


def _factory(**options: bool) -> tuple[list[FakeProducer], Any]:
    made: list[FakeProducer] = []

    def build(servers: str) -> FakeProducer:
        made.append(FakeProducer(servers, **options))
        return made[-1]

    return made, build


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    return list(iter_records(SimConfig(seed=9, customers=40, end=END, malformed_share=0.05,
                                       duplicate_share=0.05, max_events=3000)))


async def test_produce_delivers_every_record_once_in_partition_order(records: list[SimRecord]) -> None:
    made, build = _factory()
    stats = await produce(records, "kafka://h1:9092;kafka://h2:9093", None, producer_factory=build)
    producer = made[0]
    assert producer.servers == "h1:9092,h2:9093"
    assert producer.stopped
    expected: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
    for r in records:
        partition = DefaultPartitioner()(r.key, [0, 1, 2, 3], [0, 1, 2, 3])
        expected[(r.topic, partition)].append((r.key, r.value))
    assert producer.delivered == expected
    assert stats.total == len(records)
    assert stats.produced == {t: sum(r.topic == t for r in records) for t in {r.topic for r in records}}
    assert stats.malformed == sum(r.malformed for r in records) > 0
    assert stats.duplicates == sum(r.duplicate for r in records) > 0
    assert not stats.stopped


async def test_produce_paces_to_the_requested_rate(records: list[SimRecord]) -> None:
    _, build = _factory()
    started = time.perf_counter()
    stats = await produce(records[:1500], "h:1", 5000, producer_factory=build)
    elapsed = time.perf_counter() - started
    assert 0.28 <= elapsed < 0.8
    assert stats.rate == pytest.approx(5000, rel=0.15)


async def test_stop_ends_sending_and_flushes_what_was_taken(records: list[SimRecord]) -> None:
    made, build = _factory()
    stop = asyncio.Event()

    def progress(sent: int) -> None:
        if sent >= 1000:
            stop.set()

    stats = await produce(records, "h:1", 20_000, stop, progress, producer_factory=build)
    assert stats.stopped
    assert 1000 <= stats.total < len(records)
    assert made[0].total == stats.total
    assert made[0].stopped


async def test_a_refused_record_becomes_a_produce_error(records: list[SimRecord]) -> None:
    made, build = _factory(fail_delivery=True)
    with pytest.raises(ProduceError, match="refused a record"):
        await produce(records, "h:1", None, producer_factory=build)
    assert made[0].stopped


async def test_an_unreachable_broker_becomes_a_produce_error(records: list[SimRecord]) -> None:
    _, build = _factory(fail_start=True)
    with pytest.raises(ProduceError, match="cannot connect to Kafka at h:1"):
        await produce(records, "h:1", None, producer_factory=build)
