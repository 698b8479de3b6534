"""``persona simulate``: generate traffic (or replay a file) into Kafka or a JSONL file.

The command is a plain :mod:`click` command; ``app.cli`` adds it to the
``persona`` group, and ``python -m app.simulator`` runs it on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click
from click.core import ParameterSource

from app.errors import ConfigError
from app.simulator.clock import parse_rfc3339, utc_now
from app.simulator.config import SimConfig, SimTopics
from app.simulator.errors import JsonlFormatError, ProduceError
from app.simulator.generator import iter_records
from app.simulator.jsonl import read_jsonl, write_jsonl
from app.simulator.producer import parse_bootstrap, produce
from app.simulator.record import SimRecord
from app.simulator.stats import ProduceStats
from app.simulator.truth import TruthWriter

# Options that only shape generated traffic; a replayed file is sent as it is.
GENERATION_OPTIONS = ("seed", "customers", "days", "end", "malformed_share", "duplicate_share",
                      "crm_share", "clickstream_topic", "crm_topic")


class Rfc3339(click.ParamType):
    """A date-time such as ``2024-03-01T00:00:00Z`` (UTC when no offset is given)."""

    name = "DATETIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_rfc3339(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an RFC 3339 date-time such as 2024-03-01T00:00:00Z", param, ctx)


@click.command(
    "simulate",
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    epilog="""\b
Examples:
  persona simulate --customers 2000 --rate 1000
  persona simulate --seed 7 --end 2024-03-01T00:00:00Z --output run.jsonl --truth run-truth
  persona simulate --replay run.jsonl --rate 5000 --bootstrap 127.0.0.1:9092
""",
)
@click.option("--seed", type=int, default=42, help="Seed of every random choice.")
@click.option("--customers", type=click.IntRange(min=1), default=1000, help="Simulated people.")
@click.option("--days", type=click.FloatRange(min=0, min_open=True, max=3660), default=14.0,
              help="Length of the simulated period.")
@click.option("--end", type=Rfc3339(), default=None,
              help="End of the simulated period, RFC 3339 (default: now). Fix it (and --seed) "
                   "for byte-identical output.")
@click.option("--events", "max_events", type=click.IntRange(min=1), default=None,
              help="Stop after this many records (default: the whole period).")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0,
              help="Records per second sent to Kafka (0: as fast as possible).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop cleanly after this many seconds.")
@click.option("--malformed-share", type=click.FloatRange(0, 1, max_open=True), default=0.01,
              help="Share of records that are malformed on purpose (0 for none).")
@click.option("--duplicate-share", type=click.FloatRange(0, 1), default=0.005,
              help="Share of clickstream events sent twice, as publisher retries.")
@click.option("--crm-share", type=click.FloatRange(0, 1), default=0.6,
              help="Share of customers with CRM/POS/call-centre records.")
@click.option("--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the records to this JSONL file ('-': stdout) instead of Kafka.")
@click.option("--truth", "truth_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the ground truth (customers, sessions, events, CRM, malformed) here.")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
              default=None, help="Send the records of a JSONL file written by --output instead of "
                                 "generating.")
@click.option("--bootstrap", envvar="KAFKA_BOOTSTRAP_SERVERS", show_envvar=True,
              default="127.0.0.1:9092", help="Kafka bootstrap servers, host:port[,host:port].")
@click.option("--clickstream-topic", envvar="PERSONA_TOPIC_CLICKSTREAM", show_envvar=True,
              default="clickstream", help="Topic of clickstream events.")
@click.option("--crm-topic", envvar="PERSONA_TOPIC_CRM_PROFILES", show_envvar=True,
              default="crm-profiles", help="Topic of CRM records.")
@click.pass_context
def simulate(ctx: click.Context, seed: int, customers: int, days: float, end: datetime | None,
             max_events: int | None, rate: float, duration: float | None, malformed_share: float,
             duplicate_share: float, crm_share: float, output: str | None, truth_dir: Path | None,
             replay: Path | None, bootstrap: str, clickstream_topic: str, crm_topic: str) -> None:
    """Generate realistic customer traffic with ground truth, and send it to Kafka.

    Customers of six behaviour archetypes browse, search, fill carts, buy, log in
    with identifiers in varying spellings, and answer cookie banners; CRM, till and
    call-centre systems hold their own versions of the same people. A share of the
    records is malformed on purpose and some events are sent twice, as publisher
    retries do. Records go out in timestamp order, and the same options with a
    fixed --end give byte-identical output.

    By default the records are produced to Kafka; --output writes them to a JSONL
    file instead, which --replay sends later. --truth writes what really happened
    (who is who, true sessions, the reason each malformed record must be
    rejected for) into a directory. Ctrl-C stops cleanly and prints a summary.
    """
    if replay is not None:
        given = [name for name in GENERATION_OPTIONS
                 if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise click.UsageError(f"{flags} shape generated traffic; --replay sends the file as it is")
        if output is not None:
            raise click.UsageError("--replay and --output cannot be combined (copy the file instead)")
        if truth_dir is not None:
            raise click.UsageError("ground truth is written when generating: use --truth with --output")
    if output is not None and ctx.get_parameter_source("rate") == ParameterSource.COMMANDLINE:
        raise click.UsageError("--rate paces sending to Kafka; it does not apply with --output")

    config: SimConfig | None = None
    records: Iterable[SimRecord]
    if replay is not None:
        _check_replay(replay)
        records = read_jsonl(replay)
        if max_events is not None:
            records = itertools.islice(records, max_events)
    else:
        config = SimConfig(
            seed=seed, customers=customers, days=days, end=end or utc_now(),
            malformed_share=malformed_share, duplicate_share=duplicate_share, crm_share=crm_share,
            max_events=max_events, topics=SimTopics(clickstream_topic, crm_topic),
        )
        try:
            config.check()
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
        records = iter_records(config)

    truth = _open_truth(truth_dir, config) if truth_dir is not None else None
    try:
        if truth is not None:
            records = truth.tee(records)
        if output is not None:
            stats = _write_file(records, output, duration)
            verb, where = "wrote", "stdout" if output == "-" else output
        else:
            try:
                servers = parse_bootstrap(bootstrap)
            except ConfigError as exc:
                raise click.UsageError(f"--bootstrap: {exc}") from exc
            stats = _produce(records, servers, rate, duration)
            verb, where = "produced", f"Kafka at {servers}"
    finally:
        if truth is not None:
            truth.close()
    line = f"simulate: {stats.summary(verb, known_truth=replay is None)} to {where}"
    if truth_dir is not None:
        line += f"; ground truth in {truth_dir}"
    click.echo(line, err=output == "-")


def _check_replay(path: Path) -> None:
    """Read the whole file once so a bad line is reported before anything is sent."""
    try:
        for _ in read_jsonl(path):
            pass
    except JsonlFormatError as exc:
        raise click.ClickException(f"cannot replay: {exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from exc


def _open_truth(directory: Path, config: SimConfig | None) -> TruthWriter:
    try:
        return TruthWriter(directory, config)
    except OSError as exc:
        raise click.ClickException(f"cannot write ground truth to {directory}: {exc.strerror or exc}") from exc


class _SignalStop:
    """While active, SIGINT/SIGTERM ask the file writer to stop after the current record.

    A second signal raises :class:`KeyboardInterrupt`, for when stopping hangs.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _SignalStop:
        # Handlers can only be installed from the main thread (not, e.g., under a test runner's thread).
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _counted(records: Iterable[SimRecord], stats: ProduceStats, deadline: float | None,
             stopper: _SignalStop) -> Iterator[SimRecord]:
    count = stats.count
    for i, record in enumerate(records):
        if stopper.requested or (deadline is not None and i % 1000 == 0
                                 and time.monotonic() >= deadline):
            stats.stopped = True
            return
        count(record)
        yield record


def _write_file(records: Iterable[SimRecord], output: str, duration: float | None) -> ProduceStats:
    stats = ProduceStats()
    started = time.monotonic()
    deadline = started + duration if duration else None
    try:
        with _SignalStop() as stopper:
            counted = _counted(records, stats, deadline, stopper)
            if output == "-":
                write_jsonl(counted, sys.stdout.buffer)
            else:
                write_jsonl(counted, output)
    except KeyboardInterrupt:
        # write_jsonl has closed the file; every line in it is complete.
        stats.stopped = True
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from exc
    stats.elapsed = time.monotonic() - started
    return stats


def _progress_printer() -> Callable[[int], None] | None:
    """Overwrite one stderr line with the count once a second, on a terminal only."""
    if not sys.stderr.isatty():
        return None
    started = last = time.monotonic()

    def show(sent: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 1.0:
            last = now
            click.echo(f"\rsent {sent:,} records ({sent / (now - started):,.0f}/s)", err=True, nl=False)

    return show


def _produce(records: Iterable[SimRecord], servers: str, rate: float,
             duration: float | None) -> ProduceStats:
    # aiokafka logs each failed connection attempt; the error message below says it once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    progress = _progress_printer()

    async def main() -> ProduceStats:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()

        def on_signal() -> None:
            # First signal: stop sending and flush. Second: give up on the flush.
            if stop.is_set() and task is not None:
                task.cancel()
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        if duration:
            loop.call_later(duration, stop.set)
        return await produce(records, servers, rate or None, stop, progress)

    try:
        stats = asyncio.run(main())
    except ProduceError as exc:
        raise click.ClickException(str(exc)) from exc
    except asyncio.CancelledError as exc:
        raise click.ClickException("interrupted before every record was acknowledged") from exc
    finally:
        if progress is not None:
            click.echo("", err=True)
    return stats
