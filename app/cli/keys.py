"""``persona keys``: make API keys for the worker's HTTP API."""

from __future__ import annotations

import click

from app.errors import ConfigError
from app.runtime import auth


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@click.group()
def keys() -> None:
    """API keys of the worker's HTTP API (PERSONA_API_KEYS)."""


@keys.command()
@click.option("--name", required=True, help="Key name (A-Z a-z 0-9 _ -), unique among the keys.")
@click.option("--scopes", required=True, help="Comma list of ingest, read, admin.")
@click.option("--sources", default="", help="Comma list of event channels the key may post (default: any).")
def create(name: str, scopes: str, sources: str) -> None:
    """Make a key: print its token (shown once, give it to the client) and the PERSONA_API_KEYS entry.

    Only the entry (a salted HMAC-SHA256 of the token) goes into the workers' configuration; join
    several entries with ';'.
    """
    try:
        made = auth.new_key(name, _names(scopes), _names(sources))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"token (shown once; send it as 'Authorization: Bearer <token>'):\n{made.token}")
    click.echo(f"PERSONA_API_KEYS entry (add it to the workers' setting, entries joined by ';'):\n{made.entry}")
