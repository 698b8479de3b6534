"""Windowed event counts per profile, as bucketed counters in plain-JSON state.

The rules of :mod:`app.segments.rules` ask questions such as
``count(product_view, 24h) > 3`` and ``age(add_to_cart) >= 30m``. This module
keeps what answers them, per profile, in a small JSON-safe dict:

``offset``
    The source offset of the last event folded in; an event at or below it is a
    replay and changes nothing (the exactness scheme of :mod:`app.ingest.activity`).
``newest``
    The newest event time seen (epoch seconds), the reference for pruning.
``last``
    Per event type, the time of its newest event (answers ``age(type)``).
``tiers``
    Per tier (bucket size in seconds, as a string key), per event type, a map
    from bucket index (``floor(ts / size)``, as a string) to a count.

Two tiers by default (:data:`DEFAULT_TIERS`): hourly buckets kept for 48 hours
and daily buckets kept for 90 days. Every event is counted in every tier, so the
state is bounded by ``types x (49 + 91)`` counters whatever the traffic (each tier
keeps one bucket more than it answers for, since a window rarely starts on a bucket edge).

Granularity
-----------
A window is answered by the finest tier whose bucket size divides it and whose
retention covers it. A bucket counts in the window ``(now - W, now]`` when any
part of it does: ``(index + 1) * size > now - W`` and ``index * size <= now``. An
event therefore stays counted for up to one bucket longer than ``W`` (at most an
hour for a 24-hour window); the count is exact in that defined sense, and equal
to the same formula applied to the raw event list (tested as a property).

Events older than a tier's retention, measured from ``newest``, are not counted
in that tier (they could not fall in any window it answers for ``now >= newest``).

Examples
--------
>>> s = new_state()
>>> s, outcome = apply(s, "product_view", ts=3600.0 * 10 + 5, offset=1)
>>> s, outcome = apply(s, "product_view", ts=3600.0 * 11 + 5, offset=2)
>>> count(s, "product_view", 24 * 3600, now=3600.0 * 12)
2
>>> count(s, "product_view", 3600, now=3600.0 * 12)   # only bucket 11 overlaps (11h, 12h]
1
>>> apply(s, "product_view", ts=3600.0 * 11 + 5, offset=2)[1]
'replayed'
>>> age(s, "product_view", now=3600.0 * 12)
3595.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from typing import Literal

from tables.hooks import KeepOnSplit, State

Outcome = Literal["applied", "replayed"]

#: ``(bucket size in seconds, buckets kept)``: hourly for 48 h, daily for 90 days.
DEFAULT_TIERS: tuple[tuple[int, int], ...] = ((3600, 48), (86400, 90))


def new_state() -> State:
    """An empty window state."""
    return {"offset": -1, "newest": None, "last": {}, "tiers": {}}


def tier_for(window: float, tiers: Sequence[tuple[int, int]] = DEFAULT_TIERS) -> int | None:
    """The bucket size answering ``window`` seconds, or ``None`` when no tier can.

    >>> tier_for(24 * 3600), tier_for(30 * 86400), tier_for(90 * 60), tier_for(365 * 86400)
    (3600, 86400, None, None)
    """
    for size, kept in tiers:
        if window > 0 and window % size == 0 and window <= size * kept:
            return size
    return None


def apply(
    state: State | None,
    event_type: str,
    ts: float,
    offset: int,
    tiers: Sequence[tuple[int, int]] = DEFAULT_TIERS,
) -> tuple[State, Outcome]:
    """Count one event; return the new state and ``applied`` or ``replayed``.

    ``state`` is not modified. Buckets that fell out of every window are pruned.
    """
    current = state if state is not None else new_state()
    if offset <= current["offset"]:
        return current, "replayed"
    newest = ts if current["newest"] is None else max(current["newest"], ts)
    last = current["last"]
    if event_type not in last or ts > last[event_type]:
        last = {**last, event_type: ts}
    # Copy-on-write: the dicts this event leaves as they were are shared with ``state`` (rebuilding
    # every type's buckets in every tier for each event was most of what counting it cost).
    old_tiers = current["tiers"]
    new_tiers: dict[str, dict[str, dict[str, int]]] = {}
    for size, kept, key in _keyed(tiers):
        by_type = old_tiers.get(key, {})
        oldest = math.floor(newest / size) - kept  # oldest bucket that a window <= size * kept can reach
        # Parsing every key costs more than the rest of this loop: a key among the ones the tier can
        # hold once pruned (a set lookup of a hashed string) needs no parse to be kept.
        live = _live_keys(oldest, kept)
        if not live.issuperset(chain.from_iterable(by_type.values())):
            by_type = {t: _pruned(b, oldest, live) for t, b in by_type.items()}
        index = math.floor(ts / size)
        if index >= oldest:
            bucket = str(index)
            buckets = by_type.get(event_type)
            # A display keeps an existing key where it was, as the assignment into a copy did.
            by_type = {**by_type, event_type: {bucket: 1} if buckets is None
                       else {**buckets, bucket: buckets.get(bucket, 0) + 1}}
        if not all(by_type.values()):
            by_type = {t: b for t, b in by_type.items() if b}
        new_tiers[key] = by_type
    return {"offset": offset, "newest": newest, "last": last, "tiers": new_tiers}, "applied"


#: ``(size, kept, tier key)`` of :data:`DEFAULT_TIERS`: the keys are made once, not per event.
_DEFAULT_KEYED: tuple[tuple[int, int, str], ...] = tuple((size, kept, str(size)) for size, kept in DEFAULT_TIERS)


def _keyed(tiers: Sequence[tuple[int, int]]) -> Sequence[tuple[int, int, str]]:
    if tiers is DEFAULT_TIERS:
        return _DEFAULT_KEYED
    return [(size, kept, str(size)) for size, kept in tiers]


@lru_cache(maxsize=256)
def _live_keys(oldest: int, kept: int) -> frozenset[str]:
    """The keys of the buckets a tier keeps: ``oldest`` up to the newest event's bucket (``oldest + kept``).

    A fold asks for a few (its partitions' current hour and day). Making one costs a few events'
    worth of parsing: events interleaved over more hours than the cache holds would make
    :func:`apply` slower than parsing every key (measured with every call a miss: 31 µs against 18).
    """
    return frozenset(map(str, range(oldest, oldest + kept + 1)))


def _pruned(buckets: dict[str, int], oldest: int, live: frozenset[str]) -> dict[str, int]:
    """``buckets`` without those older than ``oldest``; ``live``: keys known to be at or after it."""
    if live.issuperset(buckets):
        return buckets
    return {i: n for i, n in buckets.items() if i in live or int(i) >= oldest}


#: window -> :func:`tier_for` over :data:`DEFAULT_TIERS`: the evaluator asks about the rules' few
#: windows at every evaluation.
_DEFAULT_TIER_FOR: dict[float, int | None] = {}


def _tier(window: float, tiers: Sequence[tuple[int, int]]) -> int | None:
    if tiers is not DEFAULT_TIERS:
        return tier_for(window, tiers)
    try:
        return _DEFAULT_TIER_FOR[window]
    except KeyError:
        size = tier_for(window, tiers)
        if len(_DEFAULT_TIER_FOR) < 1024:
            _DEFAULT_TIER_FOR[window] = size
        return size


def _buckets(state: State, size: int, event_type: str) -> dict[str, int]:
    buckets: dict[str, int] = state["tiers"].get(str(size), {}).get(event_type, {})
    return buckets


def count(
    state: State | None,
    event_type: str,
    window: float,
    now: float,
    tiers: Sequence[tuple[int, int]] = DEFAULT_TIERS,
) -> int:
    """Events of ``event_type`` in the window of ``window`` seconds ending at ``now``.

    Raises
    ------
    ValueError
        When no tier answers ``window`` (rules are validated against this at load).
    """
    size = _tier(window, tiers)
    if size is None:
        raise ValueError(f"no bucket tier answers a window of {window} s")
    if state is None:
        return 0
    start = now - window
    total = 0
    for i, n in _buckets(state, size, event_type).items():
        index = int(i)
        if (index + 1) * size > start and index * size <= now:  # the bucket overlaps (now - window, now]
            total += n
    return total


def age(state: State | None, event_type: str, now: float) -> float:
    """Seconds since the newest event of ``event_type`` (``inf`` when never seen)."""
    if state is None or event_type not in state["last"]:
        return math.inf
    return float(now - state["last"][event_type])


def next_change_at(
    state: State | None,
    event_type: str,
    window: float,
    now: float,
    tiers: Sequence[tuple[int, int]] = DEFAULT_TIERS,
) -> float | None:
    """When ``count(state, event_type, window, t)`` next falls without new events, or ``None``.

    That is when the oldest bucket in the window leaves it: ``(index + 1) * size + window``.

    >>> s, _ = apply(None, "search", ts=7200.0, offset=0)
    >>> next_change_at(s, "search", 3600, now=7300.0)
    14400.0
    """
    ends = [end for end, _ in _leaving(state, event_type, window, now, tiers)]
    return min(ends) if ends else None


def expiries(
    state: State | None,
    event_type: str,
    window: float,
    now: float,
    tiers: Sequence[tuple[int, int]] = DEFAULT_TIERS,
) -> list[tuple[float, int]]:
    """``(time, count)`` of each bucket now in the window, by the time it leaves it, earliest first.

    >>> s, _ = apply(None, "search", ts=7200.0, offset=0)
    >>> s, _ = apply(s, "search", ts=3700.0, offset=1)
    >>> expiries(s, "search", 7200, now=7300.0)
    [(14400.0, 1), (18000.0, 1)]
    """
    return sorted(_leaving(state, event_type, window, now, tiers))


def _leaving(
    state: State | None, event_type: str, window: float, now: float, tiers: Sequence[tuple[int, int]]
) -> list[tuple[float, int]]:
    """``(time it leaves the window, count)`` of each non-empty bucket now in it, in bucket order."""
    size = _tier(window, tiers)
    if state is None or size is None:
        return []
    start = now - window
    found = []
    for i, n in _buckets(state, size, event_type).items():
        index = int(i)
        if n and (index + 1) * size > start and index * size <= now:
            found.append((float((index + 1) * size + window), n))
    return found


def size(state: State | None) -> int:
    """Number of counters held (the bound: event types x buckets kept, summed over tiers)."""
    if state is None:
        return 0
    return sum(len(b) for by_type in state["tiers"].values() for b in by_type.values())


class WindowHooks(KeepOnSplit[State]):
    """Merge sums the buckets and keeps the newest times; the survivor's offset stays.

    Split keeps the state with the part that kept the profile id (events cannot be
    attributed to a part); erase deletes it.

    >>> a, _ = apply(None, "search", ts=100.0, offset=3)
    >>> b, _ = apply(None, "search", ts=200.0, offset=9)
    >>> m = WindowHooks().merge(a, b)
    >>> count(m, "search", 3600, now=300.0), m["offset"], m["last"]
    (2, 3, {'search': 200.0})
    """

    def merge(self, surviving: State, absorbed: State) -> State:
        last = dict(surviving["last"])
        for t, ts in absorbed["last"].items():
            last[t] = ts if t not in last else max(last[t], ts)
        tiers: dict[str, dict[str, dict[str, int]]] = {}
        for key in {*surviving["tiers"], *absorbed["tiers"]}:
            mine, theirs = surviving["tiers"].get(key, {}), absorbed["tiers"].get(key, {})
            merged: dict[str, dict[str, int]] = {}
            for t in {*mine, *theirs}:
                buckets = dict(mine.get(t, {}))
                for i, n in theirs.get(t, {}).items():
                    buckets[i] = buckets.get(i, 0) + n
                merged[t] = buckets
            tiers[key] = merged
        newest = [x for x in (surviving["newest"], absorbed["newest"]) if x is not None]
        return {**surviving, "newest": max(newest) if newest else None, "last": last, "tiers": tiers}
