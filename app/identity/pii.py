"""Keyed hashing of identifiers at the edge, so state and outputs never hold them in clear.

One implementation serves the whole project: :class:`app.identity.hashing.IdentifierHasher`
(HMAC-SHA256 of ``type + separator + value``, 128 bits hex). The identifier type is part
of the message, so the same text as an email and as a user id hashes differently.

Examples
--------
>>> h = keyed_hash("a-secret-of-16-chars", "anonymous_id", "cookie-1")
>>> len(h), h == keyed_hash("a-secret-of-16-chars", "anonymous_id", "cookie-1")
(32, True)
>>> h == keyed_hash("a-secret-of-16-chars", "user_id", "cookie-1")
False
"""

from __future__ import annotations

from functools import lru_cache

from app.identity.hashing import IdentifierHasher


@lru_cache(maxsize=8)
def _hasher(secret: str) -> IdentifierHasher:
    return IdentifierHasher(secret)


def keyed_hash(secret: str, kind: str, value: str) -> str:
    """The keyed hash of identifier ``value`` of type ``kind`` under ``secret``."""
    return _hasher(secret).identifier(kind, value)
