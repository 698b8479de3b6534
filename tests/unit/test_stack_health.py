"""The one health wait of ``persona up``, the benchmarks and the integration fixtures
(``app.embedded.stack.wait_healthy``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.embedded.stack import ManagedProcess, free_port, wait_healthy
from app.errors import StackError


def _server(status: int) -> Iterator[int]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def healthy_port() -> Iterator[int]:
    yield from _server(200)


@pytest.fixture
def recovering_port() -> Iterator[int]:
    yield from _server(503)


def test_returns_once_every_port_answers_200(healthy_port: int) -> None:
    assert wait_healthy([healthy_port], timeout=5) is True


def test_a_worker_that_dies_is_named_with_its_exit_code_and_log_tail(tmp_path: Path) -> None:
    script = "import sys; print('bad configuration: PERSONA_X'); sys.stdout.flush(); sys.exit(3)"
    dead = ManagedProcess.start("worker-7", [sys.executable, "-c", script], tmp_path)
    dead.proc.wait(10)
    with pytest.raises(StackError) as failure:
        wait_healthy(free_port(), timeout=30, alive=[dead])
    message = str(failure.value)
    assert "worker-7 exited with code 3" in message
    assert "bad configuration: PERSONA_X" in message
    assert str(dead.log_path) in message


def test_a_timeout_says_which_port_answered_what(recovering_port: int, tmp_path: Path) -> None:
    script = "print('recovering'); import time; time.sleep(30)"
    sleeper = ManagedProcess.start("worker-1", [sys.executable, "-c", script], tmp_path)
    try:
        with pytest.raises(StackError) as failure:
            wait_healthy([recovering_port], timeout=1, alive=[sleeper])
    finally:
        sleeper.stop()
    message = str(failure.value)
    assert f"{recovering_port}: HTTP 503" in message
    assert str(sleeper.log_path) in message


def test_a_cancelled_wait_returns_false_without_error(recovering_port: int) -> None:
    assert wait_healthy([recovering_port], timeout=30, cancelled=lambda: True) is False
