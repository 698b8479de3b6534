"""The Faust tables of the pipeline, bound to this worker's Faust app and settings.

Why here and not in ``tables/``: every line below binds the state layer's table class
(:class:`tables.exact.ExactTable`) to the runtime: the one Faust app, the topic names,
partition counts and RocksDB memory bounds from the settings. ``tables/`` is the state
layer and imports nothing from ``app/`` (a contract in pyproject.toml, checked by
tests/unit/test_import_contracts.py), so the binding lives with the runtime that owns the
app. Importing this module registers the tables with the app, as before (agents import it,
and it is the first of app.runtime.faust_app.COMPONENT_MODULES). The pure state logic
behind each table is in the domain packages (app.ingest, app.identity, app.profiles, ...).
"""

from __future__ import annotations

import faust

from app.runtime.faust_app import faust_app, settings
from tables.exact import ExactTable


def rocksdb_options() -> dict[str, int]:
    """RocksDB memory bounds per database (``rocksdb://``; other stores ignore them). A fresh dict for
    each table: Faust's RocksDB store pops keys out of the mapping it is given."""
    return {
        "block_cache_size": settings.rocksdb_block_cache_mb << 20,
        "write_buffer_size": settings.rocksdb_write_buffer_mb << 20,
        "max_write_buffer_number": 2,
    }


def exact_table(name: str, source_topic: str, help: str, partitions: int | None = None, **options: int) -> ExactTable:
    """An :class:`ExactTable` fed by ``source_topic``, registered with the app.

    JSON both ways: keys are str, values plain dicts, readable in the changelog.
    """
    table = ExactTable(
        faust_app,
        name=name,
        source_topic=source_topic,
        default=None,
        partitions=partitions or settings.topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        beacon=faust_app.tables.beacon,
        help=help,
        options=rocksdb_options(),
        **options,
    )
    faust_app.tables.add(table)
    return table


activity_table = exact_table(
    "activity",
    settings.topics.clickstream,
    "Per-anonymous-id activity (app.ingest.activity), keyed by the keyed hash of anonymous_id.",
)

# All identity state (the four resolver stores as key prefixes, the alias map and the
# watermark) in ONE table of ONE partition, fed by the one-partition identity-input
# topic: one changelog, one order. The watermark is written after every record's state
# (watermark_every=1) and doubles as the "last applied identity-input offset".
identity_table = exact_table(
    "identity",
    settings.identity_input_topic,
    "Identity graph (app.identity.stream prefixes): identifiers, profiles, members, blocks, aliases.",
    partitions=1,
    watermark_every=1,
)

# anonymous_id hash -> current profile, co-partitioned with clickstream (the alias topic
# has the same partitions and is keyed the same way), so ingest stamps events locally.
alias_table = exact_table(
    "identity_alias",
    settings.identity_aliases_topic,
    "Per-anonymous-id current profile_id, from the identity stage's alias records.",
)

# profile_id -> {"sessions", "profile", "segments", "partition", "next_eval_at"}
# (app.profiles.state): one table, so one changelog and one watermark cover everything
# the profiles stage writes per record.
profiles_table = exact_table(
    "profiles",
    settings.profile_events_topic,
    "Per-profile sessions, unified profile and rule segments (app.profiles.state), keyed by profile_id.",
)

# profile_id -> cluster membership, and the one online model under "__model__"
# (app.clusters.state): ONE partition like identity, so cluster ids are global; the model
# checkpoint is written just before each watermark (agents/clusters.py).
clusters_table = exact_table(
    "clusters",
    settings.cluster_input_topic,
    "Per-profile cluster membership and the cluster model checkpoint (app.clusters.state).",
    partitions=1,
)
