"""The state of identity resolution, as four mapping-like stores of plain JSON values.

The resolver only reads and writes through :class:`KeyValueStore`, a small
protocol that a ``dict`` and a Faust ``Table`` both satisfy. Values are plain
JSON data (dicts, lists, strings, numbers), and every change is written back with
``store[key] = value`` — never by mutating a value in place — so a
changelog-backed table sees every change.

``identifiers``
    identifier hash → ``{"type": str, "profiles": [profile_id, ...], "users": [user hash, ...],
    "shared": bool}``. ``profiles`` has exactly one element for identifiers of a
    deterministic type; ``users``/``shared`` exist only for the shared-device types.
``profiles``
    profile_id → ``{"profile_id": str, "origin": hash, "identifiers": {hash: type},
    "members": [hash, ...], "evidence": {"<hash>|<hash>": {"rule": str, "weight": float}}}``.
    ``members`` are the identifier hashes whose matching record is in ``members``;
    ``evidence`` edges join identifier hashes (``same_record``: seen on one
    record or event; ``probabilistic``: a fuzzy match with its weight).
``members``
    member hash → matching record: normalised names, date of birth, address
    (PII held in clear *only* for fuzzy matching, removed by erasure), and the
    keyed hashes of e-mail, phone and loyalty id. Never a clear identifier.
``blocks``
    blocking-key hash → ``[member hash, ...]`` (candidates found without a scan).

Partitioning
------------
One resolution reads keys of all four stores that are unrelated to the input's
own key (the profile of an e-mail, the members of a blocking key), so the four
tables must be co-located with the agent that resolves: the identity agent
consumes a single partition (or a topic re-keyed to one partition), and the
tables are Faust tables of that agent. The resolver itself does not care how its
input was partitioned upstream: the same input order gives the same state.

Examples
--------
>>> state = IdentityState.in_memory()
>>> state.profiles["p-1"] = {"profile_id": "p-1"}
>>> "p-1" in state.profiles, state.profiles.get("p-2") is None
(True, True)
>>> s = JsonCopyStore()
>>> s["k"] = {"a": [1]}
>>> v = s.get("k"); v["a"].append(2); s.get("k")
{'a': [1]}
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from tables.types import KeyValueStore


class JsonCopyStore:
    """A store that keeps values as JSON bytes and hands out fresh copies.

    It behaves like a changelogged table: a value that is not JSON-serialisable
    fails at once, and a change made to a value without writing it back is lost.
    Tests run the resolver over it to prove both disciplines.
    """

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._data.get(key)
        return default if raw is None else orjson.loads(raw)

    def __getitem__(self, key: str) -> Any:
        return orjson.loads(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"store keys must be str, got {type(key).__name__}")
        self._data[key] = orjson.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def raw_items(self) -> Iterator[tuple[str, bytes]]:
        """Keys and serialised values, for scanning what the store would persist."""
        return iter(self._data.items())


def _new_store() -> dict[str, Any]:
    return {}


@dataclass
class IdentityState:
    """The four stores of identity resolution (see the module docstring for their shapes)."""

    identifiers: KeyValueStore = field(default_factory=_new_store)
    profiles: KeyValueStore = field(default_factory=_new_store)
    members: KeyValueStore = field(default_factory=_new_store)
    blocks: KeyValueStore = field(default_factory=_new_store)

    @classmethod
    def in_memory(cls) -> IdentityState:
        """Plain ``dict`` stores (``persona link``, tests, benchmarks)."""
        return cls(_new_store(), _new_store(), _new_store(), _new_store())

    @classmethod
    def json_copies(cls) -> IdentityState:
        """:class:`JsonCopyStore` stores: slower, but checks serialisability and write-backs."""
        return cls(JsonCopyStore(), JsonCopyStore(), JsonCopyStore(), JsonCopyStore())


def edge_key(a: str, b: str) -> str:
    """The evidence-edge key of two identifier hashes (order-free).

    Examples
    --------
    >>> edge_key("b", "a") == edge_key("a", "b") == "a|b"
    True
    """
    return f"{a}|{b}" if a <= b else f"{b}|{a}"
