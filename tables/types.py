"""Typed protocols of the state layer: the store protocol that pure state logic reads and writes through.

A ``dict`` (tests, ``persona link``) and a ``faust.Table`` (the worker) both fit, so the
same pure code runs in both places.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class KeyValueStore(Protocol):
    """The part of a mutable mapping the resolver uses (``dict`` and ``faust.Table`` fit)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def __delitem__(self, key: str) -> None: ...

    def __contains__(self, key: object) -> bool: ...
