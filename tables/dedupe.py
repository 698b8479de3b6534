"""Recent event ids, kept short: what lets a state drop a publisher's retry or a re-sent event.

Each state that must count an event once (activity, sessions, profile) keeps the last
``window`` event ids it applied. Event ids are publishers' strings (often 36-character
UUIDs) and were most of a profile's bytes; a state keeps an 11-character digest of each
instead (64 bits of BLAKE2b: two different ids share one with probability ~5e-20 per pair).

Examples
--------
>>> recent = remember([], "0f8c7d2e-1b4a-4c9e-9d3f-2a6b8e1c5f70", window=2)
>>> recent, seen(recent, "0f8c7d2e-1b4a-4c9e-9d3f-2a6b8e1c5f70"), seen(recent, "other")
(['xeZttVC_G8s'], True, False)
>>> remember(remember(recent, "b", window=2), "c", window=2) == [digest("b"), digest("c")]
True
>>> seen(["e-1"], "e-1")   # a state written before digests holds the ids themselves
True
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence


def digest(event_id: str) -> str:
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=8).digest())[:11].decode()


def seen(recent: Sequence[str], event_id: str) -> bool:
    return digest(event_id) in recent or event_id in recent


def remember(recent: Sequence[str], event_id: str, window: int) -> list[str]:
    """``recent`` with ``event_id`` appended, the oldest dropped beyond ``window``."""
    return [*recent[-(window - 1):], digest(event_id)] if window > 1 else [digest(event_id)]
