"""``persona up``: the embedded stack, the workers and the simulator, with a live terminal view.

The view reads each worker's ``/metrics`` (the same numbers Grafana shows), so what it
prints is measured, not estimated.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import click
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.live import Live
from rich.table import Table

from app.cli.options import broker_option
from app.embedded.stack import EmbeddedStack, ManagedProcess, api_request, free_port, wait_healthy, worker_argv
from app.errors import StackError


@dataclass
class Snapshot:
    """Counters summed over all workers at one moment."""

    at: float
    processed: float = 0.0
    processed_by_type: dict[str, float] = field(default_factory=dict)
    dead_letters: dict[str, float] = field(default_factory=dict)
    duplicates: dict[str, float] = field(default_factory=dict)
    table_keys: dict[str, float] = field(default_factory=dict)
    sessions_closed: float = 0.0
    session_late_events: float = 0.0
    segment_changes: dict[str, float] = field(default_factory=dict)
    identity_changes: dict[str, float] = field(default_factory=dict)
    redis_writes: float = 0.0
    redis_errors: float = 0.0
    workers_up: int = 0

    @property
    def dead_letter_total(self) -> float:
        return sum(self.dead_letters.values())


def scrape(ports: list[int], token: str | None = None) -> Snapshot:
    snap = Snapshot(at=time.monotonic())
    by_type: dict[str, float] = defaultdict(float)
    dead: dict[str, float] = defaultdict(float)
    dups: dict[str, float] = defaultdict(float)
    keys: dict[str, float] = defaultdict(float)
    segments: dict[str, float] = defaultdict(float)
    identity: dict[str, float] = defaultdict(float)
    for port in ports:
        try:
            request = api_request(f"http://127.0.0.1:{port}/metrics", token)
            with urllib.request.urlopen(request, timeout=1.0) as response:
                text = response.read().decode()
        except OSError:
            continue
        snap.workers_up += 1
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "persona_events_processed_total":
                    by_type[labels["type"]] += sample.value
                elif sample.name == "persona_dead_letters_total":
                    dead[labels["reason"]] += sample.value
                elif sample.name == "persona_duplicates_total":
                    dups[labels["kind"]] += sample.value
                elif sample.name == "persona_table_keys":
                    keys[labels["table"]] += sample.value
                elif sample.name == "persona_sessions_closed_total":
                    snap.sessions_closed += sample.value
                elif sample.name == "persona_session_late_events_total":
                    snap.session_late_events += sample.value
                elif sample.name == "persona_segment_changes_total":
                    segments[labels["change"]] += sample.value
                elif sample.name == "persona_identity_changes_total":
                    identity[labels["change"]] += sample.value
                elif sample.name == "persona_redis_writes_total":
                    snap.redis_writes += sample.value
                elif sample.name == "persona_redis_errors_total":
                    snap.redis_errors += sample.value
    snap.processed_by_type, snap.dead_letters, snap.duplicates, snap.table_keys = (
        dict(by_type),
        dict(dead),
        dict(dups),
        dict(keys),
    )
    snap.segment_changes, snap.identity_changes = dict(segments), dict(identity)
    snap.processed = sum(by_type.values())
    return snap


def render(snap: Snapshot, previous: Snapshot | None, elapsed: float, workers: int, note: str) -> Table:
    rate = 0.0
    if previous is not None and snap.at > previous.at:
        rate = (snap.processed - previous.processed) / (snap.at - previous.at)
    table = Table(title=f"persona-stream · {elapsed:,.0f} s · {snap.workers_up}/{workers} workers up", min_width=60)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("events/s (last interval)", f"{rate:,.0f}")
    table.add_row("events processed", f"{snap.processed:,.0f}")
    table.add_row("anonymous ids", f"{snap.table_keys.get('activity', 0):,.0f}")
    table.add_row("profiles", f"{snap.table_keys.get('profiles', 0):,.0f}")
    table.add_row("identity merges", f"{snap.identity_changes.get('merged', 0):,.0f}")
    table.add_row("sessions closed", f"{snap.sessions_closed:,.0f}")
    entered, exited = snap.segment_changes.get("entered", 0), snap.segment_changes.get("exited", 0)
    table.add_row("segment entries / exits", f"{entered:,.0f} / {exited:,.0f}")
    table.add_row("dead letters", f"{snap.dead_letter_total:,.0f}")
    for reason, n in sorted(snap.dead_letters.items()):
        table.add_row(f"  {reason}", f"{n:,.0f}")
    table.add_row("duplicates skipped", f"{sum(snap.duplicates.values()):,.0f}")
    table.add_row("Redis keys written", f"{snap.redis_writes:,.0f}")
    if snap.redis_errors:
        table.add_row("Redis write errors", f"{snap.redis_errors:,.0f}")
    if note:
        table.caption = note
    return table


class Stopper:
    """Turns SIGINT/SIGTERM into a flag so shutdown happens in one place, in order."""

    def __init__(self) -> None:
        self.stopping = False
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True


@click.command()
@click.option(
    "--duration", type=float, default=0, help="Stop after this many seconds and print a summary (0: until Ctrl-C)."
)
@click.option("--workers", type=click.IntRange(1, 8), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--partitions", type=click.IntRange(1, 64), default=None, help="Partitions per topic (default: number of workers)."
)
@click.option(
    "--rate", type=float, default=1000, show_default=True, help="Simulator records/s (0: as fast as possible)."
)
@click.option(
    "--customers",
    type=click.IntRange(1, 1_000_000),
    default=10_000,
    show_default=True,
    help="Simulated customers (about 100 records each; the simulator stops when they are used up).",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Simulator seed.")
@broker_option(
    "The embedded broker: Tansu (starts at once, memory only) or Apache Kafka (fetched from Maven "
    "Central on first use; needs java and mvn).",
)
@click.option("--no-simulator", is_flag=True, help="Start the stack and workers only; publish your own events.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".persona/run"),
    show_default=True,
    help="Where process logs go.",
)
def up(
    duration: float,
    workers: int,
    partitions: int | None,
    rate: float,
    customers: int,
    seed: int,
    broker: str,
    no_simulator: bool,
    run_dir: Path,
) -> None:
    """Run everything on this machine: embedded broker and Redis, workers, simulator, live view.

    Ctrl-C (or --duration) stops every process it started and prints a summary.
    Process logs are in RUN_DIR.
    """
    console = Console()
    stopper = Stopper()
    partitions = partitions or workers
    run_dir.mkdir(parents=True, exist_ok=True)
    for old_log in run_dir.glob("*.log"):
        old_log.unlink()
    stack = EmbeddedStack(run_dir, broker)
    processes: list[ManagedProcess] = []
    final: Snapshot | None = None
    started = time.monotonic()
    try:
        with console.status(f"starting the embedded broker ({broker}) and Redis…"):
            stack.start()
        console.print(f"broker [bold]{stack.bootstrap}[/]  redis [bold]{stack.redis_url}[/]  logs [bold]{run_dir}[/]")
        env = {**stack.env, "PERSONA_TOPIC_PARTITIONS": str(partitions), "PERSONA_DATA_DIR": str(run_dir / "data")}
        ports = [free_port() for _ in range(workers)]
        for i, port in enumerate(ports):
            processes.append(
                ManagedProcess.start(
                    f"worker-{i + 1}", worker_argv(port), run_dir, {**env, "PERSONA_WEB_PORT": str(port)}
                )
            )
            console.print(f"worker-{i + 1}: http://127.0.0.1:{port}/health  /metrics  POST /v1/events")
        # The workers ask for it on the API (/v1/*); it lives as long as this run.
        console.print(f"API key (admin scope, this run only): [bold]{stack.api_key.token}[/]", soft_wrap=True)
        console.print(
            f"  e.g. curl -H 'Authorization: Bearer {stack.api_key.token}' http://127.0.0.1:{ports[0]}/v1/segments",
            soft_wrap=True, highlight=False,
        )
        write_pids(run_dir, [*stack.processes, *processes])
        wait_healthy(ports, 90, processes, cancelled=lambda: stopper.stopping)
        if not no_simulator:
            simulate = ["simulate", "--rate", str(rate), "--customers", str(customers), "--seed", str(seed)]
            argv = [sys.executable, "-m", "app.cli", *simulate, "--bootstrap", stack.bootstrap]
            processes.append(ManagedProcess.start("simulator", argv, run_dir, env))
            write_pids(run_dir, [*stack.processes, *processes])
        previous: Snapshot | None = None
        note = "Ctrl-C to stop" if not duration else f"stopping after {duration:g} s"
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while not stopper.stopping:
                elapsed = time.monotonic() - started
                if duration and elapsed >= duration:
                    break
                dead = [p.name for p in processes if not p.running and p.name != "simulator"]
                if dead:
                    raise StackError(f"{', '.join(dead)} exited; see {run_dir}/{dead[0]}.log")
                snap = scrape(ports, stack.api_key.token)
                simulator = next((p for p in processes if p.name == "simulator"), None)
                done = simulator is not None and not simulator.running
                finished = " · simulator finished: all simulated traffic sent" if done else ""
                live.update(render(snap, previous, elapsed, workers, note + finished))
                previous = snap
                time.sleep(1.0)
            final = settle(ports, processes, stack.api_key.token)
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}")
        for p in [*processes, *stack.processes]:
            # The health wait already put a dead worker's log tail in the message.
            if not p.running and str(p.log_path) not in str(exc):
                console.print(f"--- last lines of {p.log_path}:\n{p.tail()}")
        raise SystemExit(1) from exc
    finally:
        with console.status("stopping every process…"):
            for p in reversed(processes):
                p.stop()
            stack.stop()
    if final is not None:
        (run_dir / "summary.json").write_text(json.dumps(asdict(final), indent=2))
        console.print(summary(final, time.monotonic() - started))
        console.print("all processes stopped.")


def write_pids(run_dir: Path, processes: list[ManagedProcess]) -> None:
    """Record every process started, so an operator (or a test) can check none is left."""
    (run_dir / "pids").write_text("".join(f"{p.name} {p.proc.pid}\n" for p in processes))


def settle(
    ports: list[int], processes: list[ManagedProcess], token: str | None = None, quiet_for: float = 3.0,
    limit: float = 30.0,
) -> Snapshot:
    """Stop the simulator, then wait until the workers have processed what was produced."""
    for p in processes:
        if p.name == "simulator":
            p.stop()
    deadline = time.monotonic() + limit
    last = scrape(ports, token)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        snap = scrape(ports, token)
        total, last_total = snap.processed + snap.dead_letter_total, last.processed + last.dead_letter_total
        if total != last_total:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_for:
            return snap
        last = snap
    return last


def summary(snap: Snapshot, elapsed: float) -> Table:
    table = Table(title=f"summary after {elapsed:,.0f} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("events processed", f"{snap.processed:,.0f}")
    for event_type, n in sorted(snap.processed_by_type.items()):
        table.add_row(f"  {event_type}", f"{n:,.0f}")
    table.add_row("anonymous ids with state", f"{snap.table_keys.get('activity', 0):,.0f}")
    table.add_row("profiles", f"{snap.table_keys.get('profiles', 0):,.0f}")
    for change, n in sorted(snap.identity_changes.items()):
        table.add_row(f"identity changes ({change})", f"{n:,.0f}")
    table.add_row("sessions closed", f"{snap.sessions_closed:,.0f}")
    table.add_row("events late for their session", f"{snap.session_late_events:,.0f}")
    for change, n in sorted(snap.segment_changes.items()):
        table.add_row(f"segment changes ({change})", f"{n:,.0f}")
    table.add_row("dead letters", f"{snap.dead_letter_total:,.0f}")
    for reason, n in sorted(snap.dead_letters.items()):
        table.add_row(f"  {reason}", f"{n:,.0f}")
    for kind, n in sorted(snap.duplicates.items()):
        table.add_row(f"duplicates skipped ({kind})", f"{n:,.0f}")
    table.add_row("Redis keys written", f"{snap.redis_writes:,.0f}")
    return table
