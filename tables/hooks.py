"""The contract every per-profile table implements: how to merge two states and erase one.

Identity resolution merges profiles (the absorbed profile's state is folded into the
survivor's) and privacy erases them. Each table module provides a :class:`StateHooks`
implementation; the identity and erasure stages call them for every table, so a new
table cannot be forgotten: :data:`REGISTRY` lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

State = dict[str, Any]


class StateHooks(Protocol):
    """Merge and erase hooks of one table's state."""

    table: str

    def merge(self, surviving: State, absorbed: State) -> State:
        """The state of the surviving key after ``absorbed`` is folded into it."""
        ...

    def erase(self, state: State) -> State | None:
        """What is left of ``state`` after an erasure request (``None`` deletes the key)."""
        ...


REGISTRY: dict[str, StateHooks] = {}


def register(hooks: StateHooks) -> StateHooks:
    """Add a table's hooks to :data:`REGISTRY` (called at import of the table module)."""
    REGISTRY[hooks.table] = hooks
    return hooks


def registered() -> Mapping[str, StateHooks]:
    return dict(REGISTRY)
