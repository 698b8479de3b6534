"""Recent event ids, kept short: what lets a state drop a publisher's retry or a re-sent event.

Each state that must count an event once (activity, sessions, profile) keeps the last
``window`` event ids it applied. Event ids are publishers' strings (often 36-character
UUIDs); a state keeps a :data:`WIDTH`-character digest of each instead, all of them in
**one string** (oldest first, fixed width), not a list: a list of 64 small strings is
about 4 KB of Python objects per state, the string about 0.6 KB, and JSON drops the 64
pairs of quotes and commas.

The digest is the first 48 bits of the 64-bit BLAKE2b (the prefix of the older 11-character
digests), 8 URL-safe base64 characters. A new event is taken for a duplicate only if its
digest equals one of the ``window`` kept ones: with 64 kept, the probability is
64 / 2**48 ~= 2.3e-13 per event, i.e. one wrongly dropped event per ~4e12 events (at
10,000 events/s, one per ~14 years of traffic). Collisions between ids a state never
holds together do not matter.

States written before this encoding are read as they are and converted on their next
update: a list of 11-character digests (64-bit BLAKE2b, of which the 8-character digest
is the prefix) or, older still, a list of the raw ids.

Examples
--------
>>> recent = remember("", "0f8c7d2e-1b4a-4c9e-9d3f-2a6b8e1c5f70", window=2)
>>> recent, seen(recent, "0f8c7d2e-1b4a-4c9e-9d3f-2a6b8e1c5f70"), seen(recent, "other")
('xeZttVC_', True, False)
>>> remember(remember(recent, "b", window=2), "c", window=2) == digest("b") + digest("c")
True
>>> seen(["xeZttVC_G8s"], "0f8c7d2e-1b4a-4c9e-9d3f-2a6b8e1c5f70")   # a list of 11-character digests
True
>>> seen(["e-1"], "e-1"), remember(["e-1"], "e-2", window=4) == digest("e-1") + digest("e-2")   # raw ids
(True, True)
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

#: Characters per digest in the packed string (6 bytes of BLAKE2b, base64).
WIDTH: Final = 8
#: Length of the digests of the list form (before the packed string).
_LEGACY_WIDTH: Final = 11

#: Recent ids as stored: the packed string, or a list (digests or raw ids) from older states.
Recent = str | Sequence[str]


def digest(event_id: str) -> str:
    """The :data:`WIDTH`-character digest of an event id."""
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=8).digest()[:6]).decode()


def seen(recent: Recent, event_id: str) -> bool:
    """Whether ``event_id`` is one of the ``recent`` ids (any stored form)."""
    return _seen(recent, event_id, digest(event_id))


def _seen(recent: Recent, event_id: str, d: str) -> bool:
    if isinstance(recent, str):
        # Only a match at a digest boundary counts (a match across two digests is not one).
        at = recent.find(d)
        while at >= 0:
            if at % WIDTH == 0:
                return True
            at = recent.find(d, at + 1)
        return False
    return any(r == event_id or (len(r) == _LEGACY_WIDTH and r[:WIDTH] == d) for r in recent)


def pack(recent: Recent) -> str:
    """``recent`` as the packed string (a list form converted: legacy digests cut, raw ids digested).

    An 11-character entry of a list is read as a digest: raw ids were only stored before
    digests were, and one of exactly 11 characters would merely not catch its own retry.
    """
    if isinstance(recent, str):
        return recent
    return "".join(r[:WIDTH] if len(r) == _LEGACY_WIDTH else digest(r) for r in recent)


def remember(recent: Recent, event_id: str, window: int) -> str:
    """``recent`` (packed) with ``event_id`` appended, the oldest dropped beyond ``window``."""
    return _remember(recent, digest(event_id), window)


def _remember(recent: Recent, d: str, window: int) -> str:
    kept = pack(recent)[-(window - 1) * WIDTH:] if window > 1 else ""
    return kept + d


def union(*recents: Recent) -> str:
    """The ids of all ``recents`` (packed, each once, in order of first appearance): a merge keeps both sides'."""
    return "".join(dict.fromkeys(d for recent in recents for d in ids(recent)))


def interleave(*recents: Recent) -> str:
    """The ids of all ``recents`` (packed, each once), ordered by recency rank across them.

    A merge keeps both sides' recent ids, more than a window holds; the next event keeps only
    the newest ``window`` (:func:`remember`). Side after side (:func:`union`), that drops
    the whole first side, whose events are the ones most likely to come again (an ingest
    replay after a crash sends the absorbed profile's last events again, stamped with the
    survivor now). Interleaved, each side's newest come last and the oldest of both go first.

    >>> a, b, c, x, y = (digest(i) for i in "abcxy")
    >>> interleave(a + b + c, x + y) == a + b + x + c + y
    True
    >>> interleave(a + b, b + x) == a + b + x   # an id on both sides stays at its newest place
    True
    """
    sides = [list(ids(recent)) for recent in recents]
    order = [side[-rank] for rank in range(max(map(len, sides), default=0), 0, -1)
             for side in sides if len(side) >= rank]
    return "".join(reversed(dict.fromkeys(reversed(order))))


def admit(
    state: Mapping[str, Any], event_id: str, window: int, duplicate: bool | None = None
) -> tuple[bool, dict[str, Any]]:
    """Whether ``event_id`` is a duplicate for ``state``; and a copy of ``state`` that has admitted it.

    With ``duplicate`` left ``None`` the state decides with its own ``recent_ids`` (and
    remembers ``event_id`` when new). A caller that keeps one record of recent ids for
    several parts of a value decides once and passes ``duplicate``: the part then keeps no
    ids (a copy from before is dropped).

    >>> dup, new = admit({"offset": 1}, "e1", window=64)
    >>> dup, new == {"offset": 1, "recent_ids": digest("e1")}, admit(new, "e1", window=64)[0]
    (False, True, True)
    >>> admit(new, "e2", window=64, duplicate=False)
    (False, {'offset': 1})
    """
    if duplicate is not None:
        if "recent_ids" not in state:  # the common case (the profiles stage's sessions part)
            return duplicate, dict(state)
        return duplicate, {k: v for k, v in state.items() if k != "recent_ids"}
    recent: Recent = state.get("recent_ids", "")
    d = digest(event_id)  # once for both the test and the update
    if _seen(recent, event_id, d):
        return True, dict(state)
    return False, {**state, "recent_ids": _remember(recent, d, window)}


def ids(recent: Recent) -> Iterable[str]:
    """The digests of ``recent``, oldest first (lists converted as :func:`pack` does)."""
    packed = pack(recent)
    return (packed[i:i + WIDTH] for i in range(0, len(packed), WIDTH))
