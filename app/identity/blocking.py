"""Blocking keys: which earlier records a new one is compared with, found by lookup, not by scan.

A matching record yields a handful of keys; two records are candidates when
they share one. Each rule tolerates different errors (a misspelt surname still
shares ``first initial + date of birth``; a wrong date of birth still shares
``surname sound + postcode``). Keys are keyed hashes, so the ``blocks`` store
holds no clear values in its keys.

Examples
--------
>>> from app.identity.hashing import IdentifierHasher
>>> h = IdentifierHasher("a-secret-of-16-chars")
>>> rec = {"first_name": "ann", "last_name": "lee", "date_of_birth": "1980-01-02",
...        "postcode": "2119"}
>>> [name for name, rule in BLOCKING_RULES if rule(rec)]  # doctest: +NORMALIZE_WHITESPACE
['last_sound+postcode', 'last_sound+birth_year', 'first_initial+birth_date',
 'postcode+birth_date', 'first_sound+last_sound']
>>> len(blocking_keys(rec, h))
5
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from app.identity.hashing import IdentifierHasher
from app.identity.phonetic import soundex
from app.identity.state import IdentityState

Traits = Mapping[str, Any]
Rule = Callable[[Traits], tuple[str, ...] | None]


def _last_postcode(t: Traits) -> tuple[str, ...] | None:
    ln, pc = t.get("last_name"), t.get("postcode")
    return (soundex(ln), pc) if ln and pc else None


def _last_year(t: Traits) -> tuple[str, ...] | None:
    ln, dob = t.get("last_name"), t.get("date_of_birth")
    return (soundex(ln), dob[:4]) if ln and dob else None


def _first_dob(t: Traits) -> tuple[str, ...] | None:
    fn, dob = t.get("first_name"), t.get("date_of_birth")
    return (fn[0], dob) if fn and dob else None


def _postcode_dob(t: Traits) -> tuple[str, ...] | None:
    pc, dob = t.get("postcode"), t.get("date_of_birth")
    return (pc, dob) if pc and dob else None


def _first_last(t: Traits) -> tuple[str, ...] | None:
    fn, ln = t.get("first_name"), t.get("last_name")
    return (soundex(fn), soundex(ln)) if fn and ln else None


#: The blocking rules: name and key parts (``None`` when the record lacks a field).
BLOCKING_RULES: tuple[tuple[str, Rule], ...] = (
    ("last_sound+postcode", _last_postcode),
    ("last_sound+birth_year", _last_year),
    ("first_initial+birth_date", _first_dob),
    ("postcode+birth_date", _postcode_dob),
    ("first_sound+last_sound", _first_last),
)

#: Fields kept as ``[hash, *one-deletion-neighbourhood hashes]``; each neighbour is a key too.
NEAR_ID_FIELDS = ("loyalty_id",)


def blocking_keys(traits: Traits, hasher: IdentifierHasher) -> list[str]:
    """The sorted, de-duplicated blocking keys of a matching record.

    Neighbourhood hashes of typed identifiers are keys as they are (already keyed
    hashes, prefixed ``n``), so a loyalty number typed with one error still finds
    its owner.
    """
    keys = set()
    for name, rule in BLOCKING_RULES:
        parts = rule(traits)
        if parts is not None and all(parts):
            keys.add(hasher.block(name, *parts))
    for name in NEAR_ID_FIELDS:
        value = traits.get(name)
        if value:
            keys.update("n" + h for h in value[1:])
    return sorted(keys)


def remove_from_blocks(state: IdentityState, member: str, keys: Iterable[str]) -> None:
    """Remove ``member`` from the given blocking keys, deleting emptied keys."""
    blocks = state.blocks
    for bk in keys:
        listed = blocks.get(bk)
        if not listed or member not in listed:
            continue
        listed = [m for m in listed if m != member]
        if listed:
            blocks[bk] = listed
        else:
            del blocks[bk]
