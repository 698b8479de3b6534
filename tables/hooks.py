"""The hook contract of every per-profile table: how it follows identity merges, splits and erasure.

When identity resolution emits ``merged``, ``split`` or an erasure, every table
keyed by ``profile_id`` (segments, features, consent, sessions …) must follow.
Each table implements :class:`MergeHook` for its own value type, and the shell
applies it with :func:`apply_change` / :func:`apply_erasure` over the table.
Hooks are pure: they take state values and return new ones. Each table module
registers its hook with :func:`register` under its table name; the identity and
erasure stages iterate :data:`REGISTRY`, so a new table cannot be forgotten by either.

Contract
--------
``merge(surviving, absorbed) -> state``
    Fold an absorbed profile's state into the survivor's. Must be
    deterministic; should be associative, so merging several absorbed
    profiles one by one (in ``absorbed_profile_ids`` order) does not depend on
    grouping. Commutativity is not required: the survivor's state comes first.
``split(state, profile_id, new_profile_ids) -> {profile_id: state}``
    Share a profile's state among the parts of a split. State that cannot be
    attributed stays with the part that kept ``profile_id`` (the default of
    :class:`KeepOnSplit`); a part not in the result starts empty.
``erase(state) -> state | None``
    Remove personal data; ``None`` deletes the key. A value returned must hold
    nothing that identifies the person (kept, e.g., for aggregate counts).

Examples
--------
>>> class Counts(KeepOnSplit[dict]):
...     def merge(self, surviving, absorbed):
...         return {k: surviving.get(k, 0) + absorbed.get(k, 0) for k in {*surviving, *absorbed}}
...     def erase(self, state):
...         return None
>>> table = {"p-1": {"views": 2}, "p-2": {"views": 3}}
>>> apply_change(table, Counts(), {"change": "merged", "profile_id": "p-1",
...                                "absorbed_profile_ids": ["p-2"]})
>>> table
{'p-1': {'views': 5}}
>>> apply_change(table, Counts(), {"change": "split", "profile_id": "p-1",
...                                "new_profile_ids": ["p-1", "p-9"]})
>>> table
{'p-1': {'views': 5}}
>>> apply_erasure(table, Counts(), "p-1"); table
{}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from tables.types import KeyValueStore

S = TypeVar("S")


@runtime_checkable
class MergeHook(Protocol[S]):
    """Per-table reaction to identity changes (see the module docstring)."""

    def merge(self, surviving: S, absorbed: S) -> S:
        """The survivor's new state after absorbing ``absorbed``."""
        ...

    def split(self, state: S, profile_id: str, new_profile_ids: Sequence[str]) -> dict[str, S]:
        """The state of each part of a split profile (parts left out start empty)."""
        ...

    def erase(self, state: S) -> S | None:
        """State with personal data removed, or ``None`` to delete it."""
        ...


class KeepOnSplit(Generic[S]):
    """Default ``split`` and ``erase``: state stays with the part that kept the id; erase deletes."""

    def split(self, state: S, profile_id: str, new_profile_ids: Sequence[str]) -> dict[str, S]:
        keeper = profile_id if profile_id in new_profile_ids else min(new_profile_ids, default=None)
        return {} if keeper is None else {keeper: state}

    def erase(self, state: S) -> S | None:
        return None


def apply_change(store: KeyValueStore, hook: MergeHook[Any], record: Mapping[str, Any]) -> None:
    """Apply one ``identity-changes`` record to a profile-keyed store with its hook.

    ``merged`` folds each absorbed profile's state into the survivor and deletes
    it; ``split`` shares the old profile's state among the new ids;
    ``possible_match`` and ``refused`` change nothing.
    """
    kind, pid = record.get("change"), record["profile_id"]
    if kind == "merged":
        state = store.get(pid)
        for absorbed in record.get("absorbed_profile_ids", ()):
            other = store.get(absorbed)
            if other is None:
                continue
            state = other if state is None else hook.merge(state, other)
            del store[absorbed]
        if state is not None:
            store[pid] = state
    elif kind == "split":
        state = store.get(pid)
        if state is None:
            return
        parts = hook.split(state, pid, list(record.get("new_profile_ids", ())))
        if pid not in parts:
            del store[pid]
        for new_pid, part in parts.items():
            store[new_pid] = part


def apply_erasure(store: KeyValueStore, hook: MergeHook[Any], profile_id: str) -> None:
    """Erase one profile's state from a store with its hook."""
    state = store.get(profile_id)
    if state is None:
        return
    kept = hook.erase(state)
    if kept is None:
        del store[profile_id]
    else:
        store[profile_id] = kept


State = dict[str, Any]

#: Every per-profile table's hook, by table name (filled by :func:`register` at import).
REGISTRY: dict[str, MergeHook[Any]] = {}


def register(table: str, hook: MergeHook[Any]) -> MergeHook[Any]:
    """Add a table's hook to :data:`REGISTRY`; a name registered twice is a programming error."""
    if table in REGISTRY and REGISTRY[table] is not hook:
        raise ValueError(f"a hook is already registered for table {table!r}")
    REGISTRY[table] = hook
    return hook
