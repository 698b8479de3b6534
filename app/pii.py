"""Keyed hashing of identifiers at the edge, so state and outputs never hold them in clear.

The identifier type is part of the hashed message: the same text as an email and as
a user id hashes differently. 128 bits of HMAC-SHA256, hex encoded.

Examples
--------
>>> h = keyed_hash("a-secret-of-16-chars", "anonymous_id", "cookie-1")
>>> len(h), h == keyed_hash("a-secret-of-16-chars", "anonymous_id", "cookie-1")
(32, True)
>>> h == keyed_hash("a-secret-of-16-chars", "user_id", "cookie-1")
False
"""

from __future__ import annotations

import hashlib
import hmac


def keyed_hash(secret: str, kind: str, value: str) -> str:
    """HMAC-SHA256 of ``kind:value`` under ``secret``, truncated to 32 hex characters."""
    message = f"{kind}\x1f{value}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


class Hasher:
    """A :func:`keyed_hash` bound to one secret, for the hot path."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def __call__(self, kind: str, value: str) -> str:
        message = f"{kind}\x1f{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]
