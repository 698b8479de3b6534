"""Fuzz of the pure entry points: rule files and settings raise ConfigError and nothing else."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.errors import ConfigError
from app.runtime.settings import Settings
from app.segments import rules
from tests.reliability import fuzz
from tests.reliability.report import size, write_results

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(7200)]


def _load(source: Any) -> None:
    rules.load_rules(source)


def _parse(source: Any) -> None:
    rules.parse(source if isinstance(source, str) else fuzz.rules_toml(source))


def test_rule_files_and_conditions_and_settings_raise_only_config_errors() -> None:
    n = size("FUZZ_INPUTS", 100_000)
    figures: dict[str, Any] = {}
    for name, strategy, check in (
        ("rule_files", fuzz.rule_sources, _load),
        ("rule_conditions", fuzz.conditions, rules.parse),
        ("settings", fuzz.settings_env(), Settings.from_env),
    ):
        started = time.monotonic()
        inputs = fuzz.draw(strategy, n, seed=19)
        figures[name] = {**fuzz.run_each(check, inputs, (ConfigError,)), "seconds": round(time.monotonic() - started)}
    write_results("fuzz_config", figures)
    assert {name: f["unhandled"] for name, f in figures.items()} == dict.fromkeys(figures, 0), figures
