"""``persona link`` and ``persona identity …``: identity resolution over JSONL files.

``persona link --input FILE --output FILE [--weights weights.json] [--estimate]``
    Streams a JSONL file of ``crm-profiles`` records (schema
    ``schemas/crm-profiles.v1.json``, one JSON object a line) through the same
    resolver as the worker and writes one line per record,
    ``{"record_id": ..., "profile_id": ...}``, with each record's *final*
    profile. Bad lines are skipped and reported on stderr with their numbers.

``persona identity estimate --input FILE --output weights.json [--labels FILE]``
    Fits the match weights by EM on the records (and from labelled pairs, one JSON
    object a line: ``{"record_id_a": ..., "record_id_b": ..., "match": true}``).

The lead adds both to the ``persona`` group: ``cli.add_command(link)`` and
``cli.add_command(identity)``. Identifiers are hashed with ``PERSONA_HMAC_SECRET``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import click
import fastjsonschema
import orjson

from app.errors import ConfigError
from app.identity.config import ResolverConfig
from app.identity.estimate import estimate as fit_weights
from app.identity.estimate import estimate_from_labels, observe_lines
from app.identity.link import link_observations, parse_line, read_observations
from app.identity.model import MatchModel
from app.identity.observation import InvalidRecordError
from app.identity.resolver import IdentityResolver
from app.runtime.settings import Settings

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "crm-profiles.v1.json"
#: Most bad lines listed one by one on stderr (all are counted).
MAX_LISTED_ERRORS = 50


@lru_cache(maxsize=1)
def crm_validator() -> Callable[[Any], None]:
    """A validator of ``crm-profiles.v1`` records raising :class:`InvalidRecordError`."""
    try:
        schema = json.loads(SCHEMA_PATH.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the crm-profiles schema at {SCHEMA_PATH}: {exc}") from None
    check = fastjsonschema.compile(schema)

    def validate(record: Any) -> None:
        try:
            check(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidRecordError(f"not a crm-profiles.v1 record: {exc.message}") from None

    return validate


def read_lines(path: Path) -> list[bytes]:
    """The lines of a file (``-`` is stdin)."""
    if str(path) == "-":
        return click.get_binary_stream("stdin").read().splitlines()
    return path.read_bytes().splitlines()


def _secret() -> str:
    try:
        return Settings.from_env().hmac_secret
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _config(path: Path | None) -> ResolverConfig:
    try:
        return ResolverConfig.load(path) if path else ResolverConfig()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _report_errors(errors: list[tuple[int, str]], total: int) -> None:
    if not errors:
        return
    for number, message in errors[:MAX_LISTED_ERRORS]:
        click.echo(f"line {number}: {message}", err=True)
    if len(errors) > MAX_LISTED_ERRORS:
        click.echo(f"… and {len(errors) - MAX_LISTED_ERRORS} more", err=True)
    click.echo(f"skipped {len(errors)} bad line(s) of {total}", err=True)


_INPUT = click.Path(exists=True, dir_okay=False, path_type=Path, allow_dash=True)
_OUTPUT = click.Path(dir_okay=False, writable=True, path_type=Path)
_READ = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("link")
@click.option("--input", "input_path", required=True, type=_INPUT, help="JSONL of crm-profiles records.")
@click.option("--output", "output_path", required=True, type=_OUTPUT, help="JSONL of record_id → profile_id.")
@click.option("--weights", "weights_path", type=_READ, help="Weights file (default: the built-in model).")
@click.option("--estimate/--no-estimate", default=False, help="Fit the weights by EM on the input first.")
@click.option("--config", "config_path", type=_READ, help="Resolver policy JSON (limits, link modes…).")
@click.option("--changes", "changes_path", type=_OUTPUT, help="Also write the identity changes here (JSONL).")
def link(
    input_path: Path,
    output_path: Path,
    weights_path: Path | None,
    estimate: bool,
    config_path: Path | None,
    changes_path: Path | None,
) -> None:
    """Resolve a JSONL file of crm-profiles records into profiles, one record at a time."""
    config = _config(config_path)
    secret = _secret()
    lines = read_lines(input_path)
    try:
        model = MatchModel.load(weights_path) if weights_path else None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    observe = IdentityResolver(secret, model, config)
    observed, errors = read_observations(lines, observe, crm_validator())
    if model is None and estimate:
        model = fit_weights([obs.traits for _, obs in observed])
    resolver = IdentityResolver(secret, model, config)
    report = link_observations(observed, resolver, keep_changes=changes_path is not None)
    with output_path.open("wb") as out:
        for record_id, profile_id in report.assignments:
            out.write(orjson.dumps({"record_id": record_id, "profile_id": profile_id}) + b"\n")
    if changes_path is not None:
        with changes_path.open("wb") as out:
            for record in report.change_records:
                out.write(orjson.dumps(record) + b"\n")
    _report_errors(errors, len(observed) + len(errors))
    summary = ", ".join(f"{n} {k}" for k, n in sorted(report.changes.items())) or "no changes"
    click.echo(
        f"linked {len(report.assignments)} record(s) into "
        f"{len(set(p for _, p in report.assignments))} profile(s); {summary}",
        err=True,
    )


@click.group("identity")
def identity() -> None:
    """Identity resolution tools."""


@identity.command("estimate")
@click.option("--input", "input_path", required=True, type=_INPUT, help="JSONL of crm-profiles records.")
@click.option("--output", "output_path", required=True, type=_OUTPUT, help="Weights file to write.")
@click.option(
    "--labels",
    "labels_path",
    type=_READ,
    help="JSONL of labelled pairs (record_id_a, record_id_b, match).",
)
@click.option("--base", "base_path", type=_READ, help="Weights file to start from (thresholds are kept).")
@click.option("--config", "config_path", type=_READ, help="Resolver policy JSON (for the phone region).")
def estimate_command(
    input_path: Path,
    output_path: Path,
    labels_path: Path | None,
    base_path: Path | None,
    config_path: Path | None,
) -> None:
    """Estimate match weights (m/u and prior) from records by EM, optionally from labelled pairs."""
    try:
        base = MatchModel.load(base_path) if base_path else None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    good, errors = observe_lines(read_lines(input_path), _secret(), _config(config_path), crm_validator())
    _report_errors(errors, len(good) + len(errors))
    if not good:
        raise click.ClickException("no usable records in the input")
    model = fit_weights([t for _, t in good], base)
    if labels_path is not None:
        pairs, label_errors = _read_labels(labels_path)
        _report_errors(label_errors, len(pairs) + len(label_errors))
        model = estimate_from_labels(dict(good), pairs, model, prior=model.prior)
    model.save(output_path)
    click.echo(
        f"estimated weights from {len(good)} record(s) ({model.meta.get('method')}); "
        f"prior {model.prior:.3g}; wrote {output_path}",
        err=True,
    )


@identity.command("split")
@click.option("--profile", "profile_id", required=True, help="The profile to split (p-...).")
@click.option("--a", "hash_a", required=True, help="Identifier hash at one end of the evidence edge to withdraw.")
@click.option("--b", "hash_b", required=True, help="Identifier hash at the other end.")
def split_command(profile_id: str, hash_a: str, hash_b: str) -> None:
    """Operator split: withdraw one evidence edge of a profile in the running pipeline.

    Sends a command to the identity stage (the one-partition identity-input topic of
    PERSONA_APP_ID on KAFKA_BOOTSTRAP_SERVERS). The profile is recomputed without the
    edge; if it falls apart, a `split` record goes to identity-changes and the moved
    anonymous ids get their new profile. The hashes are those in identity-changes evidence
    and in Redis `persona:profile:<id>:identity`.
    """
    import asyncio
    from datetime import UTC, datetime

    from app.identity.stream import split_command as command
    from app.simulator.producer import parse_bootstrap

    try:
        settings = Settings.from_env()
        record = command(profile_id, [(hash_a, hash_b)], datetime.now(UTC).isoformat())
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(_send(parse_bootstrap(settings.kafka_bootstrap_servers), settings.identity_input_topic, record))
    click.echo(f"split of {profile_id} sent to {settings.identity_input_topic}", err=True)


async def _send(bootstrap: str, topic: str, record: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=record["profile_id"].encode(), value=orjson.dumps(record))
    finally:
        await producer.stop()


def _read_labels(path: Path) -> tuple[list[tuple[str, str, bool]], list[tuple[int, str]]]:
    pairs: list[tuple[str, str, bool]] = []
    errors: list[tuple[int, str]] = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            item = parse_line(line)
            a, b, match = item["record_id_a"], item["record_id_b"], item["match"]
            if not isinstance(a, str) or not isinstance(b, str) or not isinstance(match, bool):
                raise InvalidRecordError("record_id_a and record_id_b must be strings, match a boolean")
        except KeyError as exc:
            errors.append((number, f"missing {exc.args[0]!r}"))
            continue
        except InvalidRecordError as exc:
            errors.append((number, str(exc)))
            continue
        pairs.append((a, b, match))
    return pairs, errors
