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
