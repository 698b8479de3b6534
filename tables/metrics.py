"""Prometheus metrics of the state layer (exact and bulk recovery).

They are registered in the same (default) registry as the worker's own metrics in
app/runtime/metrics.py, which exports them under the same names, so ``GET /metrics`` and the
dashboards see no difference. They live here so that ``tables/`` imports nothing from ``app/``.
"""

from __future__ import annotations

from prometheus_client import Counter

RECOVERY_REWINDS = Counter(
    "persona_recovery_rewinds_total",
    "Source partitions rewound at recovery because the committed offset was ahead of the state.",
    ["topic"],
)
INPUT_GAPS = Counter(
    "persona_input_gaps_total",
    "Seeks back of a source partition whose batch skipped offsets the table's state expected (tables.exact.admit).",
    ["topic"],
)
RECOVERY_BULK_RECORDS = Counter(
    "persona_recovery_bulk_records_total",
    "Changelog records read into tables by the bulk recovery step (tables.bulk_recovery), per changelog topic.",
    ["topic"],
)
