"""The Faust tables of the pipeline. Pure state logic is in the sibling modules."""

from __future__ import annotations

import faust

from app.faust_app import faust_app, settings
from tables.exact import ExactTable

activity_table = ExactTable(
    faust_app,
    name="activity",
    source_topic=settings.topics.clickstream,
    default=None,
    partitions=settings.topic_partitions,
    # JSON both ways: keys are str, values plain dicts, readable in the changelog.
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    beacon=faust_app.tables.beacon,
    help="Per-anonymous-id activity (tables.activity), keyed by the keyed hash of anonymous_id.",
)
faust_app.tables.add(activity_table)

# All identity state (the four resolver stores as key prefixes, the alias map and the
# watermark) in ONE table of ONE partition, fed by the one-partition identity-input
# topic: one changelog, one order. The watermark is written after every record's state
# (watermark_every=1) and doubles as the "last applied identity-input offset".
identity_table = ExactTable(
    faust_app,
    name="identity",
    source_topic=settings.identity_input_topic,
    watermark_every=1,
    default=None,
    partitions=1,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    beacon=faust_app.tables.beacon,
    help="Identity graph (tables.identity.stream prefixes): identifiers, profiles, members, blocks, aliases.",
)
faust_app.tables.add(identity_table)

# anonymous_id hash -> current profile, co-partitioned with clickstream (the alias topic
# has the same partitions and is keyed the same way), so ingest stamps events locally.
alias_table = ExactTable(
    faust_app,
    name="identity_alias",
    source_topic=settings.identity_aliases_topic,
    default=None,
    partitions=settings.topic_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    beacon=faust_app.tables.beacon,
    help="Per-anonymous-id current profile_id, from the identity stage's alias records.",
)
faust_app.tables.add(alias_table)

# profile_id -> {"sessions", "profile", "partition"} (tables.profile_stage): one table, so
# one changelog and one watermark cover everything the profiles stage writes per record.
profiles_table = ExactTable(
    faust_app,
    name="profiles",
    source_topic=settings.profile_events_topic,
    default=None,
    partitions=settings.topic_partitions,
    schema=faust.Schema(key_serializer="json", value_serializer="json"),
    beacon=faust_app.tables.beacon,
    help="Per-profile sessions and unified profile (tables.profile_stage), keyed by profile_id.",
)
faust_app.tables.add(profiles_table)
