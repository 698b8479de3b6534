"""Prometheus metrics of the worker, one place so dashboards and code agree on names.

Every worker serves them at ``GET /metrics`` on its web port. Names are prefixed
``persona_``; the Grafana dashboards in ``grafana/`` are built from this list.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The state layer's own metrics live with it (tables/metrics.py), in the same registry; exported here too.
from tables.metrics import INPUT_GAPS as INPUT_GAPS
from tables.metrics import RECOVERY_BULK_RECORDS as RECOVERY_BULK_RECORDS
from tables.metrics import RECOVERY_REWINDS as RECOVERY_REWINDS

EVENTS_PROCESSED = Counter(
    "persona_events_processed_total",
    "Valid input records applied to state, by topic and event type.",
    ["topic", "type"],
)
DEAD_LETTERS = Counter(
    "persona_dead_letters_total",
    "Input records sent to the dead-letter topic, by source topic and reason code.",
    ["topic", "reason"],
)
DUPLICATES = Counter(
    "persona_duplicates_total",
    "Input records skipped as duplicates, by why: event_id (publisher retry) or offset (replay).",
    ["topic", "kind"],
)
HTTP_EVENTS = Counter(
    "persona_http_events_total",
    "Events received on POST /v1/events, by outcome (accepted or rejected).",
    ["outcome"],
)
HTTP_REFUSED = Counter(
    "persona_http_refused_total",
    "HTTP requests refused before reaching an endpoint's work, by status (401 no valid key, 403 scope, "
    "404 no such endpoint, 408 body too slow, 413 too large, 415 not JSON, 429 rate limit).",
    ["status"],
)
STAGE_SECONDS = Histogram(
    "persona_stage_seconds",
    "Time spent in one pipeline stage per record, by stage.",
    ["stage"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)
EVENT_LAG_SECONDS = Histogram(
    "persona_event_lag_seconds",
    "Age of a record when the worker applied it: now minus the Kafka record timestamp.",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TABLE_KEYS = Gauge(
    "persona_table_keys",
    "Keys held in a table on this worker (its active partitions).",
    ["table"],
)
REDIS_WRITES = Counter(
    "persona_redis_writes_total",
    "Keys written to Redis by the serving-layer flusher.",
)
REDIS_ERRORS = Counter(
    "persona_redis_errors_total",
    "Failed Redis flushes (the keys stay pending and are retried).",
)
REDIS_SKIPPED = Counter(
    "persona_redis_skipped_total",
    "Changed keys not written to Redis because the pending buffer was full while Redis was down.",
)
REDIS_PENDING = Gauge(
    "persona_redis_pending_keys",
    "Changed keys waiting to be written to Redis.",
)
REDIS_LAG = Gauge(
    "persona_redis_lag_seconds",
    "Table-to-Redis lag: how long the oldest change not yet written to Redis has waited (0 when none waits).",
)
REDIS_DATA_LOST = Counter(
    "persona_redis_data_lost_total",
    "Times this worker found that Redis had lost its data (its generation marker missing or changed).",
)
REDIS_REBUILDS = Counter(
    "persona_redis_rebuilds_total",
    "Self-heal re-serves of table partitions to Redis started, by reason: data_lost (generation marker), "
    "assigned (partitions taken at start or a rebalance), skipped (changes dropped while Redis was down).",
    ["reason"],
)
REDIS_REBUILD_KEYS = Counter(
    "persona_redis_rebuild_keys_total",
    "Serving keys and segment memberships re-served to Redis from this worker's tables by the self-heal.",
)
REDIS_REBUILD_QUEUED = Gauge(
    "persona_redis_rebuild_partitions_queued",
    "Table partitions waiting to be re-served to Redis (the self-heal's progress); 0 when Redis is whole.",
)
SESSIONS_CLOSED = Counter(
    "persona_sessions_closed_total",
    "Sessions closed and emitted to session-summaries, by close reason.",
    ["reason"],
)
END_TO_END_SECONDS = Histogram(
    "persona_end_to_end_seconds",
    "Clickstream record produced (its Kafka timestamp) to the profiles stage having applied its event: "
    "profile state written, session summaries and segment changes sent, Redis queued.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SESSION_LATE_EVENTS = Counter(
    "persona_session_late_events_total",
    "Events that arrived after their session was emitted: counted in the profile, in no session summary. "
    "route=redirected: the event was stamped with a profile that an identity merge had absorbed.",
    ["route"],
)
PROFILE_REDIRECTS = Counter(
    "persona_profile_redirects_total",
    "Records that reached an absorbed profile and were sent on to its survivor, by the merge that absorbed it.",
    ["cause"],
)
TICK_INDEX_SCANNED = Counter(
    "persona_tick_index_scanned_values_total",
    "Profile values decoded to give a table written before tick-index keys existed its due keys "
    "(tables/due_index.py): once per such partition; after that a restart reads no value to find due profiles.",
)
SEGMENT_CHANGES = Counter(
    "persona_segment_changes_total",
    "Segment changes emitted to segment-changes, by segment kind and change.",
    ["kind", "change"],
)
IDENTITY_CHANGES = Counter(
    "persona_identity_changes_total",
    "Records emitted to identity-changes, by change (merged, possible_match, refused, split).",
    ["change"],
)
IDENTITY_FORWARDED = Counter(
    "persona_identity_forwarded_total",
    "Input records forwarded by ingest to the identity stage, by source topic.",
    ["topic"],
)
IDENTITY_ALIASES = Counter(
    "persona_identity_aliases_total",
    "Alias records (anonymous id -> profile) emitted by the identity stage.",
)
CLUSTER_INPUTS = Counter(
    "persona_cluster_inputs_total",
    "Profile vectors read by the clusters stage, by outcome: assigned, duplicate (same session again), "
    "replayed (offset already applied); identity merges: merged, duplicate (already absorbed).",
    ["outcome"],
)
CLUSTER_LEARNED = Gauge(
    "persona_cluster_vectors_learned",
    "Vectors the cluster model has learned since it was created (its warm-up ends at PERSONA_CLUSTER_WARMUP).",
)
CLUSTER_K = Gauge(
    "persona_cluster_k",
    "Clusters (centres) of the online model; 0 during warm-up.",
)
CLUSTER_SILHOUETTE = Gauge(
    "persona_cluster_silhouette",
    "Mean silhouette of the cluster model's reservoir sample (standardised features; -1..1, higher is better).",
)
CLUSTER_SAMPLE_SHARE = Gauge(
    "persona_cluster_sample_share",
    "Share of the reservoir sample nearest to each cluster, by segment id.",
    ["segment"],
)
CLUSTER_DRIFT = Gauge(
    "persona_cluster_centre_drift",
    "How far the cluster centres moved since the previous quality check (standardised units), mean and max.",
    ["stat"],
)
AGENT_UP = Gauge(
    "persona_agent_up",
    "1 while a stage's agent runs and its code has not raised since the worker started; 0 once it crashed "
    "(until the worker restarts) or has no running actor.",
    ["agent"],
)
AGENT_CRASHES = Counter(
    "persona_agent_crashes_total",
    "Times a stage's agent code raised (Faust restarts the actor; the records it held stay unacknowledged).",
    ["agent"],
)
STAGE_STALLED = Gauge(
    "persona_stage_stalled",
    "1 while a stage has lag on an input partition it holds and that partition's committed offset has not "
    "moved for PERSONA_STALL_SECONDS; 0 otherwise.",
    ["stage"],
)
STAGE_LAG = Gauge(
    "persona_stage_lag_records",
    "Records between the committed offset and the end of the input partitions a stage holds on this worker.",
    ["stage"],
)
