"""The `persona` command line: every command explains itself, bad configuration is a clear error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app.cli import cli


@pytest.mark.parametrize("command", [[], ["up"], ["worker"], ["simulate"], ["link"], ["identity"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 4


def test_worker_with_bad_configuration_exits_with_a_clear_message_not_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PERSONA_TOPIC_PARTITIONS": "0"},
    )
    assert result.returncode == 1
    assert "PERSONA_TOPIC_PARTITIONS must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_at_warning_level_leaves_the_root_logger_above_debug() -> None:
    import logging

    import faust

    from app.cli import build_worker

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        worker = build_worker(faust.App("test-no-spinner", autodiscover=False), "warning")
        worker.on_setup_root_logger(root, logging.WARNING)
        assert root.getEffectiveLevel() > logging.DEBUG
        assert not root.isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
