"""The ``persona`` command line."""

from __future__ import annotations

import os
from typing import Any

import click

from app.errors import PersonaError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """persona-stream: real-time customer personalization on Kafka, Faust and Redis.

    `persona up` runs everything on an embedded broker and Redis; `persona worker`
    runs one stream worker against the Kafka and Redis named by KAFKA_BOOTSTRAP_SERVERS
    and REDIS_URL.
    """


@cli.command()
@click.option("--web-port", type=int, help="Port of this worker's HTTP server (default PERSONA_WEB_PORT or 6066).")
@click.option("--loglevel", "-l", default=None, help="Log level (default PERSONA_LOG_LEVEL or warning).")
def worker(web_port: int | None, loglevel: str | None) -> None:
    """Run one stream-processing worker (Faust) until SIGTERM or Ctrl-C.

    Workers of the same PERSONA_APP_ID form one consumer group: start more of them
    to share the partitions. Each serves /health, /metrics and POST /v1/events.
    """
    if web_port is not None:
        os.environ["PERSONA_WEB_PORT"] = str(web_port)
    refuse_unsafe_start()
    try:
        from app.runtime.faust_app import faust_app, load_components, settings
    except PersonaError as exc:
        raise click.ClickException(str(exc)) from exc
    from app.runtime.topic_specs import undescribed_tables
    from app.runtime.topics_admin import ensure_topics_sync

    load_components()
    if unknown := undescribed_tables(faust_app.tables.keys()):
        raise click.ClickException(
            f"tables without a topic description in app/runtime/topic_specs.py TABLES: {unknown}"
        )
    try:
        # Creates missing topics and refuses existing ones that would lose data (docs/operations.md, Topics).
        ensure_topics_sync(settings)
    except PersonaError as exc:
        raise click.ClickException(str(exc)) from exc
    from app.runtime.health_probe import stop_pending
    from app.runtime.shutdown import ShutdownDeadline

    deadline = ShutdownDeadline(settings.shutdown_grace_seconds, stop_pending)
    build_worker(faust_app, loglevel or settings.log_level, deadline).execute_from_commandline()


def refuse_unsafe_start() -> None:
    """Stop with a one-line message when the worker's configuration is unsafe to serve
    (a non-loopback address without API keys, the development HMAC secret outside the
    embedded stack), or invalid."""
    from app.runtime.settings import Settings

    try:
        refusal = Settings.from_env().startup_refusal()
    except PersonaError as exc:
        raise click.ClickException(str(exc)) from exc
    if refusal is not None:
        raise click.ClickException(refusal)


def build_worker(app: Any, loglevel: str, deadline: Any = None) -> Any:
    """Faust's ``Worker`` for ``app``, without its start-up spinner, and with a stop ``deadline``.

    The spinner sets the root logger to DEBUG (to spin on every record) whatever the log
    level: every debug call of aiokafka and Faust then builds a LogRecord, per message
    (about 20 % of the worker's CPU per event, docs/benchmarks.md).

    ``deadline`` (an :class:`app.runtime.shutdown.ShutdownDeadline`) is armed by SIGTERM and SIGINT, on
    top of Faust's own handlers: the process exits within its grace period however the stop goes.
    """
    from faust import Worker

    from app.runtime.shutdown import chain_signal_handlers

    class DeadlineWorker(Worker):
        def install_signal_handlers(self) -> None:
            super().install_signal_handlers()
            if deadline is not None:
                chain_signal_handlers(deadline)

    stream_worker = DeadlineWorker(app, loglevel=loglevel)
    stream_worker.spinner = None
    return stream_worker


def _register_commands() -> None:
    """Commands that live beside the code they drive (imported late: they pull in their packages)."""
    from app.cli.bench import bench
    from app.cli.console import up
    from app.cli.identity import identity, link
    from app.cli.keys import keys
    from app.runtime.rebuild import rebuild_redis
    from app.simulator.command import simulate

    for command in (up, simulate, link, identity, rebuild_redis, bench, keys):
        cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="persona")
