"""Simulated time: integer milliseconds since the epoch, rendered as RFC 3339.

The generator works in integer milliseconds because they compare and add
quickly and cannot drift the way floats do; only the wire format is a string.

Examples
--------
>>> format_ms(0)
'1970-01-01T00:00:00.000Z'
>>> format_ms(1_700_000_000_123)
'2023-11-14T22:13:20.123Z'
>>> to_ms(parse_rfc3339("2023-11-14T22:13:20.123Z"))
1700000000123
>>> parse_rfc3339("2024-03-01T10:00:00+01:00").isoformat()
'2024-03-01T09:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Minute prefixes ("2024-03-01T09:30:") are the expensive part of formatting and
# a run touches comparatively few distinct minutes, so they are cached; the bound
# only matters for callers formatting arbitrary instants.
_MINUTE_PREFIX: dict[int, str] = {}
_MINUTE_PREFIX_LIMIT: Final = 200_000


def _minute_prefix(minute: int) -> str:
    prefix = (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")
    if len(_MINUTE_PREFIX) >= _MINUTE_PREFIX_LIMIT:
        _MINUTE_PREFIX.clear()
    _MINUTE_PREFIX[minute] = prefix
    return prefix


def format_ms(ms: int) -> str:
    """Render epoch milliseconds as RFC 3339 UTC with milliseconds and ``Z``.

    Parameters
    ----------
    ms : int
        Milliseconds since 1970-01-01T00:00:00Z (years 1970 to 9999).

    Returns
    -------
    str
        For example ``2024-03-01T09:30:00.250Z``.
    """
    minute, rem = divmod(ms, MINUTE_MS)
    prefix = _MINUTE_PREFIX.get(minute) or _minute_prefix(minute)
    return f"{prefix}{rem // 1000:02d}.{rem % 1000:03d}Z"


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of ``moment``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 instant into an aware UTC datetime.

    A value without an offset is taken as UTC.

    Raises
    ------
    ValueError
        When ``text`` is not a date-time.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def utc_now() -> datetime:
    """The current time in UTC, truncated to milliseconds like every simulated timestamp."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
