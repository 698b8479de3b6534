"""The watermark key of exact recovery (tables/exact.py): one per partition, in the table itself.

Pure key layout, kept apart from :mod:`tables.exact` (which needs Faust and aiokafka) so that
pure folds can tell a watermark key from a state key without importing the worker's runtime.

>>> watermark_key(3), is_watermark_key(watermark_key(3)), is_watermark_key("p-1")
('__watermark__/3', True, False)
"""

from __future__ import annotations

from typing import Any

WATERMARK_PREFIX = "__watermark__/"


def watermark_key(partition: int) -> str:
    return f"{WATERMARK_PREFIX}{partition}"


def is_watermark_key(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(WATERMARK_PREFIX)
