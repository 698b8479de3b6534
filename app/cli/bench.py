"""``persona bench``: the throughput benchmark (bench/throughput.py), one run on one embedded broker
(Tansu, or Apache Kafka with ``--broker kafka``).

The ``bench`` package is installed with ``app`` (``pyproject.toml``'s ``packages.find``); it is
imported late, when the command runs.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import click

from app.cli.options import broker_option

REPO = Path(__file__).resolve().parents[2]
SCENARIO_CHOICES = ("faust_passthrough", "quix_count", "pipeline_1w", "pipeline_2w")


@click.command()
@click.option("--events", type=click.IntRange(1000), default=1_000_000, show_default=True, help="Input events.")
@click.option("--quick", is_flag=True, help="100,000 events (overrides --events).")
@click.option("--seed", type=int, default=42, show_default=True, help="Simulator seed of the input.")
@click.option(
    "--probe-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="Length of each latency probe (records produced at --probe-share of the scenario's measured rate).",
)
@click.option(
    "--probe-share",
    type=click.FloatRange(0.01, 1.0),
    default=0.5,
    show_default=True,
    help="The latency probe's rate as a share of the scenario's measured rate (the p99 target is set at 0.5).",
)
@click.option(
    "--probe-rate",
    type=click.FloatRange(min=1.0),
    default=None,
    help="Probe every scenario at this many events/s instead of --probe-share of its own drain rate "
    "(so tuning variants meet the same load).",
)
@click.option(
    "--probe-warmup",
    type=click.FloatRange(0.0),
    default=5.0,
    show_default=True,
    help="Seconds a pipeline latency probe runs before it is measured (the drain's last sessions close then).",
)
@click.option(
    "--probe-input",
    type=click.Choice(["continuation", "new-customers"]),
    default="continuation",
    show_default=True,
    help="What the latency probe carries: the input continued in time by the same customers, or a second "
    "population over the input's period (the probe before 4 December; see bench/probe_input.py).",
)
@click.option(
    "--scenario",
    "scenarios",
    type=click.Choice(SCENARIO_CHOICES),
    multiple=True,
    help="Run only these scenarios (repeatable; default all four, in order).",
)
@click.option(
    "--profile",
    "profile_seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="Also profile a separate 1-worker pipeline drain with py-spy for this many seconds (0: off).",
)
@click.option(
    "--probe-profile",
    is_flag=True,
    help="Record the first worker's event loop with py-spy during each pipeline latency probe and report "
    "its longest busy stretches (bench/loop_stalls.py).",
)
@click.option(
    "--tuning",
    "tuning",
    multiple=True,
    help="Also run the 1-worker pipeline with this tuning variant (repeatable; 'all' for every one; "
    "see bench/throughput.py TUNING_VARIANTS).",
)
@click.option(
    "--compare",
    "compare",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also run the 1-worker pipeline from this source tree (e.g. an unpacked `git archive main`), "
    "alternating with this checkout, in the same run (repeatable).",
)
@click.option("--rounds", type=click.IntRange(1), default=1, show_default=True, help="Rounds of --compare.")
@click.option(
    "--batch-events",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Feed every scenario publisher-side batch records of at most this many events of one visitor "
    "(schemas/clickstream-batch.v1.json) instead of a record per event; 0: off.",
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(0, min_open=True),
    default=30.0,
    show_default=True,
    help="With --batch-events: a visitor's batch is flushed once its next event happened this long (event "
    "time) after the batch's first, as an SDK's flush interval.",
)
@broker_option(
    "Run every scenario on this embedded broker: Tansu or Apache Kafka (app/embedded/kafka_broker.py).",
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO / "bench" / "results",
    show_default=True,
)
def bench(
    events: int,
    quick: bool,
    seed: int,
    probe_seconds: float,
    probe_share: float,
    probe_rate: float | None,
    probe_warmup: float,
    probe_input: str,
    scenarios: tuple[str, ...],
    profile_seconds: float,
    probe_profile: bool,
    tuning: tuple[str, ...],
    compare: tuple[Path, ...],
    rounds: int,
    batch_events: int,
    batch_seconds: float,
    broker: str,
    results_dir: Path,
) -> None:
    """Measure events/s, latency, CPU and memory of bare Faust, Quix Streams and the pipeline (1 and 2 workers).

    Generates (once) a seeded simulator input under bench/data/, starts the embedded
    broker and Redis, runs every scenario on its own topics, and writes
    bench/results/<timestamp>.json and .png.
    """
    from rich.console import Console

    from bench.throughput import TUNING_VARIANTS, BenchConfig, BenchError, run, table, tuning_table

    if "all" in tuning:
        tuning = tuple(TUNING_VARIANTS)
    unknown = [t for t in tuning if t not in TUNING_VARIANTS]
    if unknown:
        raise click.BadParameter(f"{unknown}; choose from {list(TUNING_VARIANTS)} or 'all'", param_hint="--tuning")

    # SIGTERM unwinds like Ctrl-C, so every process the run started is stopped by its finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    console = Console()
    cfg = BenchConfig(
        events=100_000 if quick else events,
        seed=seed,
        probe_seconds=probe_seconds,
        probe_share=probe_share,
        probe_rate=probe_rate,
        probe_warmup=probe_warmup,
        probe_input=probe_input,
        profile_seconds=profile_seconds,
        probe_profile=probe_profile,
        results_dir=results_dir,
        tuning=tuning,
        compare=compare,
        rounds=rounds,
        batch_events=batch_events,
        batch_seconds=batch_seconds,
        broker=broker,
        command="persona " + shlex.join(["bench", *sys.argv[2:]]) if len(sys.argv) > 1 else "persona bench",
    )
    if scenarios:
        cfg.scenarios = tuple(s for s in SCENARIO_CHOICES if s in scenarios)
    try:
        document = run(cfg, console)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(table(document))
    if document.get("tuning"):
        console.print(tuning_table(document))
    console.print(f"results: {document['_json_path']}  plot: {document['_png_path']}")
