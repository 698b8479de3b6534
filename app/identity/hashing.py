"""Keyed hashes that stand in for identifiers everywhere in state and outputs.

Identifiers are never stored in clear. An identifier becomes
``HMAC-SHA256(secret, type + 0x1f + normalised value)`` as lower-case hex
truncated to 32 characters (128 bits). The identifier *type* is part of the
message, so an e-mail address and a user id with the same text hash
differently.

Two internal keyed hashes use BLAKE2b with the same secret (a keyed BLAKE2b is
a MAC, and about twice as fast as HMAC-SHA256, which matters on the hot path):
blocking keys and the *edit neighbourhood* of typed identifiers (see
:meth:`IdentifierHasher.near_hashes`), which lets two loyalty numbers that
differ by one keystroke be recognised as close without keeping either in clear.

Examples
--------
>>> h = IdentifierHasher("a-secret-of-16-chars")
>>> e = h.identifier("email", "ann@example.com")
>>> len(e), e == h.identifier("email", "ann@example.com")
(32, True)
>>> e == h.identifier("user_id", "ann@example.com")
False
>>> profile_id_for(e).startswith("p-")
True
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

#: Identifier types the resolver knows, strongest first (the order breaks ties).
IDENTIFIER_TYPES: tuple[str, ...] = (
    "user_id",
    "crm_record_id",
    "email",
    "phone",
    "loyalty_id",
    "device_id",
    "anonymous_id",
)

_SEP = "\x1f"


class IdentifierHasher:
    """Keyed hashing of normalised identifiers and blocking keys.

    Parameters
    ----------
    secret
        The HMAC secret (``Settings.hmac_secret``); at least 16 characters.

    Examples
    --------
    >>> h = IdentifierHasher("a-secret-of-16-chars")
    >>> other = IdentifierHasher("another-secret-16ch")
    >>> h.identifier("phone", "+447911123456") != other.identifier("phone", "+447911123456")
    True
    >>> len(h.block("ln_pc", "G650", "2119"))
    32
    """

    __slots__ = ("_hmac", "_key", "_memo")

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("the identity HMAC secret must be at least 16 characters")
        key = secret.encode()
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)
        # BLAKE2b keys are at most 64 bytes: derive one from the secret.
        self._key = hashlib.sha256(b"persona-identity-blake2b" + key).digest()
        self._memo: dict[str, str] | None = None

    def identifier(self, id_type: str, value: str) -> str:
        """The 128-bit HMAC-SHA256 hex digest of a normalised identifier of ``id_type``."""
        message = f"{id_type}{_SEP}{value}"
        memo = self._memo
        if memo is not None:
            digest = memo.get(message)
            if digest is None:
                digest = memo[message] = self._mac(message)
            return digest
        return self._mac(message)

    def _mac(self, message: str) -> str:
        mac = self._hmac.copy()
        mac.update(message.encode())
        return mac.hexdigest()[:32]

    def memoising(self) -> IdentifierHasher:
        """The same hasher, remembering each identifier hash it computes: for one batch of input, then dropped.

        Ingest hashes an event's anonymous id twice (its table key and its observation), and a
        visitor's events come in runs, so a batch asks for the same few hashes again and again.
        The memo holds identifiers in clear, which is why it lives only as long as the batch
        that holds them anyway, not in the shared hasher.

        >>> h = IdentifierHasher("a-secret-of-16-chars")
        >>> m = h.memoising()
        >>> m.identifier("email", "ann@example.com") == h.identifier("email", "ann@example.com")
        True
        >>> m.identifier("email", "ann@example.com") == m.identifier("email", "ann@example.com"), len(m._memo or ())
        (True, 1)
        >>> h._memo is None
        True
        """
        view = IdentifierHasher.__new__(IdentifierHasher)
        view._hmac, view._key, view._memo = self._hmac, self._key, {}
        return view

    def block(self, kind: str, *parts: str) -> str:
        """A keyed hash naming one blocking key (``kind`` plus its parts)."""
        data = _SEP.join((kind, *parts)).encode()
        return hashlib.blake2b(data, key=self._key, digest_size=16).hexdigest()

    def near_hashes(self, id_type: str, value: str) -> list[str]:
        """Keyed hashes of the one-deletion neighbourhood of ``value``.

        Two values are within one edit (substitution, insertion, deletion or
        adjacent transposition) exactly when their neighbourhoods intersect,
        so the comparison works on hashes alone. The list is sorted and
        de-duplicated; hashes are 64 bits (they only need to avoid chance
        collisions among a handful of values).

        Examples
        --------
        >>> h = IdentifierHasher("a-secret-of-16-chars")
        >>> a, b = h.near_hashes("loyalty_id", "1804974"), h.near_hashes("loyalty_id", "1809474")
        >>> bool(set(a) & set(b))
        True
        >>> bool(set(a) & set(h.near_hashes("loyalty_id", "5551234")))
        False
        """
        variants = {value} | {value[:i] + value[i + 1 :] for i in range(len(value))}
        prefix = f"{id_type}~{_SEP}"
        key = self._key
        return sorted(
            hashlib.blake2b((prefix + v).encode(), key=key, digest_size=8).hexdigest()
            for v in variants
        )


# Ingest derives the profile id of every event's anonymous id (current_profile) and a visitor's
# events come in runs; the argument is a keyed hash, so a cache of them keeps nothing in clear.
@lru_cache(maxsize=1 << 14)
def profile_id_for(identifier_hash: str) -> str:
    """The canonical profile id derived from the identifier hash that created the profile.

    Deterministic (no random uuid), so replays and re-partitioning give the same
    ids; it reveals nothing beyond the keyed hash it is derived from.

    Examples
    --------
    >>> profile_id_for("0" * 32) == profile_id_for("0" * 32)
    True
    >>> len(profile_id_for("0" * 32))
    34
    """
    return "p-" + hashlib.sha256(f"profile{_SEP}{identifier_hash}".encode()).hexdigest()[:32]


def change_id_for(*parts: str) -> str:
    """A deterministic id of one identity change, from what caused it.

    Examples
    --------
    >>> change_id_for("rec-1", "merged", "0") == change_id_for("rec-1", "merged", "0")
    True
    """
    return hashlib.sha256(_SEP.join(parts).encode()).hexdigest()[:32]
