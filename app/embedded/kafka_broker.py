"""Apache Kafka without Docker: the pinned broker from Maven Central, run like the other embedded parts.

:func:`fetch_kafka` resolves ``org.apache.kafka:kafka_2.13`` (and one SLF4J binding, or the broker
logs nothing) with ``mvn dependency:copy-dependencies`` on a generated pom into a cache folder
(``PERSONA_KAFKA_CACHE_DIR``), reused once complete. :class:`KafkaBroker` formats a KRaft storage
directory and runs ONE combined broker/controller on free loopback ports, with the broker settings
of ``docker-compose.yml`` (:data:`COMPOSE_SETTINGS`; a unit test compares the two), so what compose
runs is what the tests run. Its storage is durable: :meth:`KafkaBroker.stop` then
:meth:`KafkaBroker.start` brings the same topics back (what a broker-restart test needs).

Needs ``java`` (17+) and ``mvn`` on ``PATH``; :func:`fetch_kafka` says so when one is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.embedded.stack import ManagedProcess, free_port, wait_for_port
from app.errors import StackError

#: The Kafka release the project runs and tests on (also the image of docker-compose.yml).
KAFKA_VERSION = "4.1.1"
#: Maven coordinates (group, artifact, version) copied with their dependencies.
ARTIFACTS: tuple[tuple[str, str, str], ...] = (
    ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
    ("org.slf4j", "slf4j-reload4j", "1.7.36"),
)
#: The compose file's ``CLUSTER_ID``: one id for every storage this project formats.
CLUSTER_ID = "GjFzsKe4Qhm_MPs6G6cKbQ"
#: Broker settings of ``docker-compose.yml``'s kafka service that do not name an address or path.
COMPOSE_SETTINGS: Mapping[str, str] = {
    "node.id": "1",
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "num.partitions": "4",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "log.retention.hours": "168",
}
#: JVM options: the heap the notes measured (about 390 MB resident).
JVM_OPTIONS = ("-Xmx512m", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
#: Broker log: warnings, plus the start line and the log cleaner's (compaction) reports.
LOG4J_PROPERTIES = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.log.LogCleaner=INFO
"""
#: The same for the log4j 2 calls the broker makes itself (else it prints a configuration error).
LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = stdout
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = stdout
"""
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def pom_xml(artifacts: tuple[tuple[str, str, str], ...] = ARTIFACTS) -> str:
    """A pom whose only purpose is ``mvn dependency:copy-dependencies`` of ``artifacts``.

    Examples
    --------
    >>> xml = pom_xml((("org.example", "lib", "1.0"),))
    >>> "<artifactId>lib</artifactId>" in xml and "<version>1.0</version>" in xml
    True
    """
    dependencies = "".join(
        f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version></dependency>\n"
        for group, artifact, version in artifacts
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>persona-stream</groupId><artifactId>kafka-broker</artifactId><version>1</version>\n"
        "  <packaging>pom</packaging>\n"
        f"  <dependencies>\n{dependencies}  </dependencies>\n"
        "</project>\n"
    )


def server_properties(port: int, controller_port: int, log_dir: Path) -> dict[str, str]:
    """One combined KRaft broker/controller on loopback: compose's settings plus this node's addresses.

    Examples
    --------
    >>> props = server_properties(9092, 9093, Path("/data"))
    >>> props["listeners"], props["controller.quorum.voters"], props["log.retention.hours"]
    ('PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093', '1@127.0.0.1:9093', '168')
    """
    return {
        **COMPOSE_SETTINGS,
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
    }


def properties_text(props: Mapping[str, str]) -> str:
    """``props`` as a Java properties file.

    >>> properties_text({"node.id": "1", "log.dirs": "/d"})
    'node.id=1\\nlog.dirs=/d\\n'
    """
    return "".join(f"{key}={value}\n" for key, value in props.items())


def compose_broker_settings(environment: Mapping[str, object]) -> dict[str, str]:
    """The broker settings an ``apache/kafka`` image makes of its ``KAFKA_*`` environment.

    ``KAFKA_FOO_BAR`` is ``foo.bar`` (the image's rule: ``___`` is ``-``, ``__`` is ``_``, ``_`` is ``.``).

    >>> compose_broker_settings({"KAFKA_NODE_ID": 1, "KAFKA_LOG_RETENTION_HOURS": 168, "CLUSTER_ID": "x"})
    {'node.id': '1', 'log.retention.hours': '168'}
    """
    out: dict[str, str] = {}
    for name, value in environment.items():
        if not name.startswith("KAFKA_"):
            continue
        key = name.removeprefix("KAFKA_").lower().replace("___", "-").replace("__", "\0").replace("_", ".")
        out[key.replace("\0", "_")] = str(value)
    return out


def cache_dir() -> Path:
    """Where fetched Kafka releases live: ``PERSONA_KAFKA_CACHE_DIR`` (``~/.cache/persona-stream/kafka``)."""
    from app.runtime.settings import Settings

    return Path(Settings.from_env().kafka_cache_dir).expanduser()


def require_tool(name: str, why: str) -> str:
    """The path of ``name`` on PATH, or a :class:`StackError` saying what it is needed for."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"Apache Kafka needs `{name}` on PATH ({why}); install it (e.g. apt-get install {why})")
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes fetching at once: the second waits, then reuses
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch_kafka(root: Path | None = None, version: str = KAFKA_VERSION) -> Path:
    """The folder of Kafka ``version``'s jars, fetched from Maven Central on first use.

    A folder is reused once a fetch completed in it (its ``.complete`` marker); a failed fetch
    raises :class:`StackError` with Maven's last lines and leaves nothing to reuse.
    """
    release = (root or cache_dir()) / version
    lib = release / "lib"
    if (lib / ".complete").exists():
        return lib
    require_tool("java", "openjdk-17-jre-headless")
    mvn = require_tool("mvn", "maven")
    with _locked(release.with_suffix(".lock")):
        if (lib / ".complete").exists():
            return lib
        shutil.rmtree(lib, ignore_errors=True)
        release.mkdir(parents=True, exist_ok=True)
        artifacts = tuple((g, a, version if g == "org.apache.kafka" else v) for g, a, v in ARTIFACTS)
        (release / "pom.xml").write_text(pom_xml(artifacts))
        argv = [mvn, "--batch-mode", "--quiet", "-f", str(release / "pom.xml"),
                "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
                f"-DoutputDirectory={lib}", "-DincludeScope=runtime"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise StackError(f"fetching Apache Kafka {version} with Maven failed ({' '.join(argv)}):\n{tail}")
        (lib / ".complete").write_text(f"{version}\n")
    return lib


def java_argv(lib: Path, main_class: str, *args: str, config_dir: Path | None = None) -> list[str]:
    """The command line running ``main_class`` of the jars in ``lib`` (log configs in ``config_dir``).

    >>> java_argv(Path("/k/lib"), "kafka.Kafka", "server.properties")[-3:]
    ['/k/lib/*', 'kafka.Kafka', 'server.properties']
    """
    logging = (
        [f"-Dlog4j.configuration=file:{config_dir / 'log4j.properties'}",
         f"-Dlog4j2.configurationFile={config_dir / 'log4j2.properties'}"]
        if config_dir else []
    )
    return ["java", *JVM_OPTIONS, *logging, "-cp", f"{lib}/*", main_class, *args]


@dataclass
class KafkaBroker:
    """One Apache Kafka node (broker and controller) on loopback, its storage under ``data_dir``.

    ``start()`` formats the storage the first time and starts the node, ``stop()`` stops it
    (SIGTERM, then SIGKILL after ``stop_timeout``); ``start()`` again serves the same topics on
    the same ports.
    """

    log_dir: Path
    data_dir: Path
    port: int = 0
    controller_port: int = 0
    lib: Path | None = None
    process: ManagedProcess | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        self.lib = self.lib or fetch_kafka()
        require_tool("java", "openjdk-17-jre-headless")  # the jars may be cached on a machine without Java
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        config = self.data_dir / "server.properties"
        logs = self.data_dir / "kraft-logs"
        if not (logs / "meta.properties").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            props = {**server_properties(self.port, self.controller_port, logs), **self.extra}
            config.write_text(properties_text(props))
            (self.data_dir / "log4j.properties").write_text(LOG4J_PROPERTIES)
            (self.data_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
            argv = java_argv(self.lib, STORAGE_TOOL, "format", "-t", CLUSTER_ID, "-c", str(config),
                             config_dir=self.data_dir)
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise StackError(f"formatting Kafka storage failed: {done.stdout}{done.stderr}")
        self.process = ManagedProcess.start(
            "kafka", java_argv(self.lib, MAIN_CLASS, str(config), config_dir=self.data_dir), self.log_dir
        )
        started = time.monotonic()
        wait_for_port(self.port, timeout, self.process.proc)
        wait_answering(self.bootstrap, timeout - (time.monotonic() - started))
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def wait_answering(bootstrap: str, timeout: float) -> None:
    """Wait until the broker answers a metadata request naming itself (registered and unfenced)."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    async def answers() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        except KafkaError:
            return False
        finally:
            await client.close()

    deadline = time.monotonic() + max(timeout, 1.0)
    while time.monotonic() < deadline:
        if asyncio.run(answers()):
            return
        time.sleep(0.25)
    raise StackError(f"Apache Kafka at {bootstrap} did not answer within {timeout:.0f} s")
