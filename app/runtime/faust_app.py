"""The Faust application and its topics, configured from :class:`app.runtime.settings.Settings`.

Importing this module reads the environment once. Agents, tables and web views
register themselves on :data:`faust_app` when their modules are imported
(:func:`load_components` imports them all, the worker calls it).
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import faust
from faust.types import TransportT

from app.events.validation import Limits, Validator
from app.identity import IdentityResolver
from app.runtime.http_guard import HttpGuard, PersonaWeb
from app.runtime.kafka_transport import Transport
from app.runtime.settings import Settings
from tables import (
    compact_store,  # noqa: F401  (registers the compact:// table store with Faust)
    rocksdb_store,  # noqa: F401  (rocksdb:// accepts writes outside a current event)
)

settings = Settings.from_env()
#: API keys, scopes and rate limits of the HTTP API (app/runtime/http_guard.py).
http_guard = HttpGuard(settings)


class PersonaApp(faust.App):
    """``faust.App`` whose consumer transport takes ``fetch_max_wait_ms`` and ``fetch_min_bytes``
    (see :mod:`app.runtime.kafka_transport`)."""

    def __init__(
        self, *args: Any, fetch_max_wait_ms: int, fetch_min_bytes: int, recovery_bulk_min_records: int, **kwargs: Any
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.recovery_bulk_min_records = recovery_bulk_min_records
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)

    def _new_web(self) -> Any:
        # Only the product's views: none of Faust's own (/table/, /router/, /, ...).
        return PersonaWeb(self)

    def _create_directories(self) -> None:
        # Faust makes each directory without its parents, so a worker started in a fresh clone
        # (no `.persona/` yet) stopped with FileNotFoundError on the default PERSONA_DATA_DIR.
        for path in (self.conf.datadir, self.conf.appdir, self.conf.tabledir):
            path.mkdir(parents=True, exist_ok=True)


faust_app = PersonaApp(
    settings.app_id,
    broker=settings.broker_url,
    store=settings.table_store,
    datadir=settings.data_dir,
    topic_partitions=settings.topic_partitions,
    # Topics Faust declares itself (changelogs it finds missing) get the same replicas as ensure_topics'.
    topic_replication_factor=settings.replication_factor,
    topic_allow_declare=True,
    web_enabled=True,
    web_host=settings.web_host,
    # web_host only builds URLs; web_bind is the address the server listens on.
    web_bind=settings.web_host,
    web_port=settings.web_port,
    web_application_options=http_guard.application_options(),
    # Records are validated by our own code, so they arrive as bytes.
    key_serializer="raw",
    value_serializer="raw",
    broker_commit_interval=settings.commit_interval_seconds,
    # Faust's default is 0. A linger batches changelog records but delays every awaited ack.
    producer_linger=settings.producer_linger_seconds,
    fetch_max_wait_ms=settings.fetch_max_wait_ms,
    fetch_min_bytes=settings.fetch_min_bytes,
    # Faust's table manager, with a recovery that reads large changelog partitions in bulk.
    TableManager="tables.bulk_recovery:PersonaTableManager",
    recovery_bulk_min_records=settings.recovery_bulk_min_records,
    # A worker that loses its partitions must not keep serving stale keys.
    table_cleanup_interval=30.0,
    autodiscover=False,
    consumer_auto_offset_reset="earliest",
    # The group join waits up to the rebalance timeout for members; keep it short so a
    # restarted worker is back in seconds (Tansu waits the full timeout on a first join).
    broker_rebalance_timeout=settings.rebalance_timeout_seconds,
    broker_session_timeout=settings.session_timeout_seconds,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
    consumer_group_instance_id=settings.worker_instance_id or None,
    # Faust's default supervisor, remembering each agent crash for /health/ready (app/runtime/supervision.py).
    agent_supervisor="app.runtime.supervision:CrashRecordingSupervisor",
)

validator = Validator(
    Limits(
        max_record_bytes=settings.max_record_bytes,
        max_clock_skew_seconds=settings.max_clock_skew_seconds,
        max_event_age_days=settings.max_event_age_days,
    )
)
resolver = IdentityResolver(settings.hmac_secret)
hasher = resolver.hasher.identifier
started_at = time.time()


def _topic(name: str, partitions: int | None = None) -> faust.TopicT:
    return faust_app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions or settings.topic_partitions,
    )


clickstream_topic = _topic(settings.topics.clickstream)
crm_profiles_topic = _topic(settings.topics.crm_profiles)
dead_letters_topic = _topic(settings.topics.dead_letters)
output_topics = {name: _topic(name) for name in settings.topics.outputs()}
# Internal: the single ordered identity stream, and aliases partitioned like clickstream.
identity_input_topic = _topic(settings.identity_input_topic, partitions=1)
identity_aliases_topic = _topic(settings.identity_aliases_topic)
profile_events_topic = _topic(settings.profile_events_topic)
# Internal: profile feature vectors for the one cluster model.
cluster_input_topic = _topic(settings.cluster_input_topic, partitions=1)
session_summaries_topic = output_topics[settings.topics.session_summaries]
segment_changes_topic = output_topics[settings.topics.segment_changes]


COMPONENT_MODULES = (
    "app.runtime.tables",
    "agents.ingest",
    "agents.identity",
    "agents.profiles",
    "agents.clusters",
    "app.runtime.web",
    "app.runtime.lifecycle",
    "app.runtime.health_probe",
)


def load_components() -> None:
    """Import every module that registers agents, tables, timers and web views."""
    for module in COMPONENT_MODULES:
        importlib.import_module(module)
