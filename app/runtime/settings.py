"""Worker configuration, read once from the environment.

Every setting has a default that works on the embedded stack; production sets the
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` variables at least. The README's
configuration table is generated from :data:`SETTINGS_DOC` so the two never drift.

Examples
--------
>>> s = Settings.from_env({"PERSONA_TOPIC_PARTITIONS": "4"})
>>> s.topic_partitions
4
>>> Settings.from_env({"PERSONA_TOPIC_PARTITIONS": "zero"})
Traceback (most recent call last):
...
app.errors.ConfigError: PERSONA_TOPIC_PARTITIONS must be an integer, got 'zero'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from app.errors import ConfigError
from app.events.positions import STRIDE as PACK_STRIDE

DEV_HMAC_SECRET = "persona-dev-secret-change-me"
#: Most events one ``POST /v1/events`` may carry.
MAX_EVENTS_PER_REQUEST = 1000


@dataclass(frozen=True)
class Topics:
    """Topic names; each can be overridden with ``PERSONA_TOPIC_<NAME>``."""

    clickstream: str = "clickstream"
    crm_profiles: str = "crm-profiles"
    segment_changes: str = "segment-changes"
    recommendations: str = "recommendations"
    identity_changes: str = "identity-changes"
    session_summaries: str = "session-summaries"
    dead_letters: str = "dead-letters"
    consent_audit: str = "consent-audit"
    profile_erasures: str = "profile-erasures"

    def outputs(self) -> list[str]:
        return [
            self.segment_changes,
            self.recommendations,
            self.identity_changes,
            self.session_summaries,
            self.dead_letters,
            self.consent_audit,
            self.profile_erasures,
        ]

    def inputs(self) -> list[str]:
        return [self.clickstream, self.crm_profiles]


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    app_id: str = "persona-stream"
    topic_partitions: int = 1
    replication_factor: int = 1
    table_store: str = "memory://"
    data_dir: str = ".persona/data"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    hmac_secret: str = DEV_HMAC_SECRET
    max_record_bytes: int = 65536
    max_clock_skew_seconds: float = 300.0
    max_event_age_days: float = 90.0
    dedup_window: int = 64
    redis_ttl_seconds: int = 30 * 24 * 3600
    redis_flush_interval: float = 0.2
    redis_max_pending: int = 100_000
    redis_check_seconds: float = 2.0
    redis_rebuild_chunk: int = 100
    log_level: str = "warning"
    rebalance_timeout_seconds: float = 10.0
    session_timeout_seconds: float = 10.0
    worker_instance_id: str = ""
    cluster_k: int = 6
    cluster_warmup: int = 500
    fetch_max_wait_ms: int = 50
    fetch_min_bytes: int = 1
    producer_linger_seconds: float = 0.0
    commit_interval_seconds: float = 1.0
    ingest_batch_size: int = 500
    ingest_batch_seconds: float = 0.01
    identity_batch_size: int = 200
    identity_batch_seconds: float = 0.01
    profiles_batch_size: int = 500
    profiles_batch_seconds: float = 0.01
    profiles_tick_limit: int = 20
    profiles_tick_evaluations: int = 100
    profiles_pack_events: int = PACK_STRIDE
    recovery_bulk_min_records: int = 10_000
    rocksdb_block_cache_mb: int = 64
    rocksdb_write_buffer_mb: int = 16
    stall_seconds: float = 60.0
    shutdown_grace_seconds: float = 20.0
    api_keys: str = ""
    open_endpoints: str = "health,metrics"
    read_rate: float = 100.0
    read_burst: int = 200
    ingest_rate: float = 2000.0
    ingest_burst: int = 4000
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    embedded_stack: bool = False
    kafka_cache_dir: str = "~/.cache/persona-stream/kafka"
    topics: Topics = field(default_factory=Topics)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``), raising ConfigError on bad values."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "topics":
                continue
            name = _env_name(f.name)
            if name in env:
                values[f.name] = _PARSERS[f.type](name, env[name])  # type: ignore[index]
        topic_values = {
            t.name: env[f"PERSONA_TOPIC_{t.name.upper()}"]
            for t in fields(Topics)
            if f"PERSONA_TOPIC_{t.name.upper()}" in env
        }
        settings = cls(**values, topics=Topics(**topic_values))
        settings.check()
        return settings

    def check(self) -> None:
        if self.topic_partitions < 1:
            raise ConfigError("PERSONA_TOPIC_PARTITIONS must be at least 1")
        if self.replication_factor < 1:
            raise ConfigError("PERSONA_REPLICATION_FACTOR must be at least 1")
        if not self.table_store.startswith(("memory://", "compact://", "rocksdb://", "aerospike://")):
            raise ConfigError(
                f"PERSONA_TABLE_STORE must be memory://, compact:// or rocksdb://, got {self.table_store!r}"
            )
        if self.redis_check_seconds < 0:
            raise ConfigError("PERSONA_REDIS_CHECK_SECONDS must be 0 (off) or positive")
        if self.redis_rebuild_chunk < 1:
            raise ConfigError("PERSONA_REDIS_REBUILD_CHUNK must be at least 1")
        if self.max_record_bytes < 1024:
            raise ConfigError("PERSONA_MAX_RECORD_BYTES must be at least 1024")
        if self.dedup_window < 1:
            raise ConfigError("PERSONA_DEDUP_WINDOW must be at least 1")
        if self.cluster_k < 0:
            raise ConfigError("PERSONA_CLUSTER_K must be 0 (choose by silhouette) or at least 1")
        if self.cluster_warmup < 1:
            raise ConfigError("PERSONA_CLUSTER_WARMUP must be at least 1")
        if not 0 <= self.fetch_max_wait_ms <= 60_000:
            raise ConfigError("PERSONA_FETCH_MAX_WAIT_MS must be between 0 and 60000")
        if not 1 <= self.fetch_min_bytes <= 64 << 20:
            raise ConfigError("PERSONA_FETCH_MIN_BYTES must be between 1 and 67108864")
        if self.producer_linger_seconds < 0:
            raise ConfigError("PERSONA_PRODUCER_LINGER_SECONDS must not be negative")
        if self.commit_interval_seconds <= 0:
            raise ConfigError("PERSONA_COMMIT_INTERVAL_SECONDS must be positive")
        for stage in ("ingest", "identity", "profiles"):
            if getattr(self, f"{stage}_batch_size") < 1:
                raise ConfigError(f"{_env_name(f'{stage}_batch_size')} must be at least 1")
            if getattr(self, f"{stage}_batch_seconds") <= 0:
                raise ConfigError(f"{_env_name(f'{stage}_batch_seconds')} must be positive")
        if self.profiles_tick_evaluations < 1:
            raise ConfigError("PERSONA_PROFILES_TICK_EVALUATIONS must be at least 1")
        if self.profiles_tick_limit < 1:
            raise ConfigError("PERSONA_PROFILES_TICK_LIMIT must be at least 1")
        if not 1 <= self.profiles_pack_events <= PACK_STRIDE:
            raise ConfigError(f"PERSONA_PROFILES_PACK_EVENTS must be within 1..{PACK_STRIDE}")
        if self.recovery_bulk_min_records < 0:
            raise ConfigError("PERSONA_RECOVERY_BULK_MIN_RECORDS must be 0 (off) or positive")
        for name in ("rocksdb_block_cache_mb", "rocksdb_write_buffer_mb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_env_name(name)} must be at least 1")
        if self.stall_seconds <= 0:
            raise ConfigError("PERSONA_STALL_SECONDS must be positive")
        if self.shutdown_grace_seconds <= 0:
            raise ConfigError("PERSONA_SHUTDOWN_GRACE_SECONDS must be positive")
        if len(self.hmac_secret) < 16:
            raise ConfigError("PERSONA_HMAC_SECRET must be at least 16 characters")
        if not self.kafka_cache_dir.strip():
            raise ConfigError("PERSONA_KAFKA_CACHE_DIR must name a directory")
        self.check_http()

    def check_http(self) -> None:
        """The HTTP API's settings: keys, open endpoints, rate limits, timeouts."""
        from app.runtime import auth

        auth.parse_keys(self.api_keys)
        auth.parse_open_groups(self.open_endpoints)
        for name in ("read_rate", "ingest_rate"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{_env_name(name)} must be 0 (no limit) or positive")
        if self.read_burst < 1:
            raise ConfigError("PERSONA_READ_BURST must be at least 1")
        if self.ingest_burst < MAX_EVENTS_PER_REQUEST:
            raise ConfigError(f"PERSONA_INGEST_BURST must be at least {MAX_EVENTS_PER_REQUEST} (one full request)")
        for name in ("header_timeout_seconds", "body_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)} must be positive")

    def startup_refusal(self) -> str | None:
        """Why ``persona worker`` must not start with these settings (one line), or ``None``."""
        from app.runtime import auth

        return auth.startup_refusal(
            self.web_host, bool(self.api_keys.strip()), self.hmac_secret, DEV_HMAC_SECRET, self.embedded_stack
        )

    @property
    def identity_input_topic(self) -> str:
        """Internal topic of the identity stage's input: always ONE partition (one ordered stream)."""
        return f"{self.app_id}-identity-input"

    @property
    def identity_aliases_topic(self) -> str:
        """Internal topic of ``anonymous_id hash -> profile_id`` aliases, partitioned like clickstream."""
        return f"{self.app_id}-identity-aliases"

    @property
    def profile_events_topic(self) -> str:
        """Internal topic of validated events stamped with their profile, keyed by ``profile_id``."""
        return f"{self.app_id}-profile-events"

    @property
    def cluster_input_topic(self) -> str:
        """Internal topic of profile feature vectors for the cluster model: always ONE partition (one model)."""
        return f"{self.app_id}-cluster-input"

    def internal_topics(self) -> dict[str, int]:
        """Internal topics between the stages and their partition counts (changelogs: ``app.runtime.topic_specs``)."""
        return {
            self.identity_input_topic: 1,
            self.identity_aliases_topic: self.topic_partitions,
            self.profile_events_topic: self.topic_partitions,
            self.cluster_input_topic: 1,
        }

    @property
    def broker_url(self) -> str:
        """The bootstrap servers in Faust's ``kafka://host:port;host:port`` form."""
        servers = self.kafka_bootstrap_servers.removeprefix("kafka://")
        return ";".join(f"kafka://{s.strip()}" for s in servers.replace(";", ",").split(",") if s.strip())

    @property
    def bootstrap_list(self) -> str:
        """The bootstrap servers in aiokafka's ``host:port,host:port`` form."""
        return ",".join(u.removeprefix("kafka://") for u in self.broker_url.split(";"))


def _env_name(field_name: str) -> str:
    if field_name in ("kafka_bootstrap_servers", "redis_url"):
        return field_name.upper()
    return f"PERSONA_{field_name.upper()}"


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _parse_float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("1", "0", "true", "false", "yes", "no"):
        raise ConfigError(f"{name} must be 1 or 0 (true or false), got {raw!r}")
    return value in ("1", "true", "yes")


def _parse_str(name: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(f"{name} must not be empty")
    return raw.strip()


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "int": _parse_int,
    "float": _parse_float,
    "str": _parse_str,
    "bool": _parse_bool,
}

SETTINGS_DOC: dict[str, str] = {
    "kafka_bootstrap_servers": "Kafka bootstrap servers, `host:port[,host:port]`; `persona up` sets the embedded one.",
    "redis_url": "Redis URL for the serving layer. `persona up` sets it to the embedded redis-server.",
    "app_id": "Faust application id: the consumer group and the prefix of changelog topics.",
    "topic_partitions": "Partitions of every topic the worker creates (inputs, outputs, changelogs).",
    "replication_factor": (
        "Replicas of every topic the worker (and Faust) creates; at most the number of brokers. "
        "The embedded broker: 1. See docs/operations.md, Topics."
    ),
    "table_store": "Faust table store: `memory://` (default), `compact://` (memory, cold values zstd-packed: "
    "4x less RSS per profile in `bench.state_scale`; `compact://?hot=N` keeps N values unpacked, default 5000) "
    "or `rocksdb://` for large state.",
    "data_dir": "Directory for Faust's local data (RocksDB files, worker state).",
    "web_host": "Address the worker's HTTP server binds to (`/health`, `/metrics`, `/v1/events`).",
    "web_port": "Port of the worker's HTTP server.",
    "hmac_secret": "Secret key of the keyed hashes (HMAC-SHA256) that replace identifiers. Change it in production.",
    "max_record_bytes": "Largest input record accepted; larger ones are dead-lettered as `record_too_large`.",
    "max_clock_skew_seconds": "How far in the future an event timestamp may be before it is rejected.",
    "max_event_age_days": "How old an event timestamp may be before it is rejected.",
    "dedup_window": "How many recent `event_id`s are remembered per anonymous id to drop publisher retries.",
    "redis_ttl_seconds": "TTL of the serving keys written to Redis.",
    "redis_flush_interval": "Seconds between pipelined flushes of changed state to Redis.",
    "redis_max_pending": (
        "Most changed keys held for Redis while it is unreachable; beyond that writes are skipped and counted."
    ),
    "redis_check_seconds": (
        "Seconds between reads of the Redis generation marker (`persona-meta:generation:<app id>`), and one "
        "read as soon as Redis answers after an outage: missing or changed means Redis lost its data, and the "
        "worker re-serves the table partitions it owns from its tables. 0: no reads (a worker still re-serves "
        "the partitions it takes at start or a rebalance)."
    ),
    "redis_rebuild_chunk": (
        "Table values a Redis self-heal re-serves per step: one pipelined flush each, the event loop free between "
        "steps."
    ),
    "log_level": "Worker log level.",
    "rebalance_timeout_seconds": "Kafka consumer-group rebalance timeout: how long a join waits for members.",
    "session_timeout_seconds": "Kafka consumer-group session timeout: how soon a dead worker's partitions move.",
    "cluster_k": (
        "Clusters of the online profile model; 0 chooses k by silhouette (2-8) on the warm-up sample. "
        "Fixed once the model is trained."
    ),
    "cluster_warmup": "Closed sessions' profile vectors buffered before the cluster centres are seeded (k-means++).",
    "worker_instance_id": (
        "Static group membership id (`group.instance.id`), unique per worker: a worker restarted with the "
        "same id takes its predecessor's place at once. Empty: dynamic membership."
    ),
    "fetch_max_wait_ms": (
        "Longest time the broker may hold a consumer fetch waiting for data. faust-streaming 0.15.3 hard-codes "
        "1500 ms; on the embedded broker that wait showed up as end-to-end latency (p50 1.4 s), see docs/benchmarks.md."
    ),
    "fetch_min_bytes": (
        "Fewest bytes the broker should gather for a consumer fetch before it answers (within the fetch wait). "
        "1 answers with whatever is there; more means fewer, fuller fetches and batches, each record waiting "
        "up to the fetch wait for them."
    ),
    "producer_linger_seconds": (
        "Producer linger: how long a send waits for others to share its batch. Every awaited acknowledgement "
        "(identity outputs, CRM forwards) waits this long too; no gain measured on the full pipeline "
        "(docs/benchmarks.md)."
    ),
    "commit_interval_seconds": "Seconds between commits of consumed offsets (exactness does not depend on it).",
    "ingest_batch_size": "Most clickstream records the ingest stage takes as one batch (one table write per key).",
    "ingest_batch_seconds": "Longest the ingest stage waits to fill a batch: the latency a quiet stream pays.",
    "identity_batch_size": (
        "Most identity-input records the identity stage (and CRM records ingest-crm) takes as one batch: "
        "one wait for the broker's acknowledgements and one state commit per batch."
    ),
    "identity_batch_seconds": "Longest the identity stage and ingest-crm wait to fill a batch.",
    "profiles_batch_size": (
        "Most profile-events records the profiles stage takes as one batch (one table write per profile); each "
        "event of a pack counts."
    ),
    "profiles_batch_seconds": "Longest the profiles stage waits to fill a batch: the latency a quiet stream pays.",
    "profiles_tick_evaluations": (
        "Most timed rule evaluations one tick runs per partition, over all the profiles it visits (each can have "
        "32 due after hours of stream time). A tick that spends it sends the next tick at once: bounds a tick's "
        "pause by its work, where the tick limit bounds it by profiles."
    ),
    "profiles_tick_limit": (
        "Most profiles one tick (every 5 s) closes sessions or fires timed rules for, per partition. A tick that "
        "reaches it sends the next tick at once, so a backlog (much of the table due after an outage) drains a "
        "limit at a time between the events: bounds the pause and the memory of one tick."
    ),
    "profiles_pack_events": (
        "Most events ingest packs into one profile-events record (app.profiles.pack): the events of a batch "
        "that go to one partition travel as one Kafka record, so the profiles stage consumes one record, not "
        "one per event. 1 sends a record per event."
    ),
    "recovery_bulk_min_records": (
        "A worker taking over a changelog partition with at least this many records to read reads it with a "
        "bulk consumer straight into the table store (tables.bulk_recovery), not through Faust's per-record "
        "recovery; 0 turns bulk reads off."
    ),
    "rocksdb_block_cache_mb": (
        "rocksdb:// only: block cache of each RocksDB database (one per table partition a worker holds, about 14 "
        "with 4 partitions). Faust's default is 2 GB each, which a large table under load fills."
    ),
    "rocksdb_write_buffer_mb": (
        "rocksdb:// only: size of each of a database's two memtables (Faust's default: three of 64 MB)."
    ),
    "stall_seconds": (
        "A stage whose input has lag on this worker and whose committed offset has not moved for this long is "
        "stalled: `/health/ready` answers 503 naming it and `persona_stage_stalled` is 1."
    ),
    "shutdown_grace_seconds": (
        "Longest a worker takes to stop after SIGTERM (or Ctrl-C): past it, it logs what was still pending and "
        "exits with code 1, whatever state its agents are in. Keep it below the orchestrator's kill timeout."
    ),
    "api_keys": (
        "API keys of the HTTP API, `;`-separated `NAME:SCOPES:SOURCES:SALT:HASH` entries made by "
        "`persona keys create` (scopes `ingest`, `read`, `admin`; sources: event channels or `*`). Empty: no key "
        "is asked for, and the worker refuses a non-loopback `PERSONA_WEB_HOST`. `persona up` sets its own."
    ),
    "open_endpoints": (
        "Endpoints served without a key: `health` (`/health*`), `metrics` (`/metrics`), both comma-separated, "
        "or `none` (then any valid key may read them)."
    ),
    "read_rate": "Requests a second each key may make to the read endpoints (profiles, lookup, segments, "
    "cluster model), refilled into a token bucket; 0: no limit. Over it: 429 with `Retry-After`.",
    "read_burst": "Most read requests a key may make at once (its token bucket's size).",
    "ingest_rate": "Events a second each key may post to `POST /v1/events` (a request costs its event count); "
    "0: no limit.",
    "ingest_burst": "Most events a key may post at once (at least one full request, 1000 events).",
    "header_timeout_seconds": "How long a connection may take to send a request's headers (and stay idle "
    "between requests) before the worker closes it.",
    "body_timeout_seconds": "How long `POST /v1/events` waits for the announced body before it answers 408 "
    "and closes the connection.",
    "embedded_stack": "Set (1) by `persona up` and the test stack: the worker runs on the embedded stack, where "
    "the development HMAC secret is allowed. Elsewhere `persona worker` refuses that secret.",
    "kafka_cache_dir": "Where `persona up --broker kafka` and the Kafka tests keep Apache Kafka's jars, fetched "
    "from Maven Central with `mvn` on first use (app/embedded/kafka_broker.py).",
}


def settings_table() -> str:
    """The README configuration table, one row per environment variable."""
    defaults = Settings()
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        if f.name == "topics":
            continue
        rows.append(f"| `{_env_name(f.name)}` | `{getattr(defaults, f.name)}` | {SETTINGS_DOC[f.name]} |")
    for t in fields(Topics):
        rows.append(
            f"| `PERSONA_TOPIC_{t.name.upper()}` | `{getattr(defaults.topics, t.name)}` "
            f"| Name of the `{t.default}` topic. |"
        )
    return "\n".join(rows)
