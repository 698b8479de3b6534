"""Options shared by more than one ``persona`` command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from app.embedded.stack import BROKERS


def broker_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--broker``: which embedded broker a command starts (Tansu, the default, or Apache Kafka)."""
    return click.option("--broker", type=click.Choice(BROKERS), default="tansu", show_default=True, help=help)
