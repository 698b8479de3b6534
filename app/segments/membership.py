"""Segment memberships per profile and their changes as ``segment-changes`` records.

The membership state of a profile is plain JSON::

    {"segments": {"<segment id>": {"kind": "rule" | "cluster", "since": <epoch s>, "reason": {...}}}}

:func:`diff` compares it with a fresh evaluation (a mapping of segment id to
:class:`~app.segments.evaluate.Decision`) and returns the new state and one
``segment-changes.v1`` record per *real* change: a segment entered or exited. An
evaluation that confirms the current memberships emits nothing.

``change_id`` is derived from a ``basis`` (what caused the evaluation, e.g.
``"clickstream:0:1234"`` or ``"timer:1718354940"``), the profile, the segment and
the change, so a replayed input produces the same ids and consumers can de-duplicate.

Identity changes
----------------
* :func:`merge_changes`: the absorbed profiles exit all their segments (they no
  longer exist); the survivor's memberships become the re-evaluated set, evaluated
  on the merged state with :func:`union` as current members (so the hysteresis and
  dwell of either side carry over). It enters what it did not have and exits what
  it no longer qualifies for.
* :func:`split_changes`: the old profile exits everything if it did not keep a
  part, otherwise it is diffed like any update; each new part enters its segments.
* :func:`erase_changes`: the erased profile exits everything (reason ``erased``).

:class:`MembershipHooks` is the table-following part of the contract
(:mod:`tables.hooks`): merge is :func:`union`, split keeps the state with the
part that kept the id, erase deletes.

Examples
--------
>>> from app.segments.evaluate import Decision
>>> s = new_state()
>>> s, out = diff("p-1", s, {"vip": Decision("vip", "rule", {"rule": "vip"})}, now=0.0, basis="b1")
>>> [(c["segment_id"], c["change"], c["at"]) for c in out]
[('vip', 'entered', '1970-01-01T00:00:00.000Z')]
>>> diff("p-1", s, {"vip": Decision("vip", "rule", {"rule": "vip"})}, now=5.0, basis="b2")[1]
[]
>>> [(c["segment_id"], c["change"]) for c in diff("p-1", s, {}, now=9.0, basis="b3")[1]]
[('vip', 'exited')]
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.segments.evaluate import Decision
from tables.hooks import KeepOnSplit, State

KINDS = ("rule", "cluster")
Change = dict[str, Any]


def new_state() -> State:
    """No memberships."""
    return {"segments": {}}


def segments(state: State | None) -> dict[str, dict[str, Any]]:
    """Segment id -> ``{"kind", "since", "reason"}`` (the ``members`` argument of ``evaluate``)."""
    return {} if state is None else dict(state["segments"])


def iso(ts: float) -> str:
    """RFC 3339 UTC time with milliseconds, as ``segment-changes`` carries it.

    >>> iso(1718354940.5)
    '2024-06-14T08:49:00.500Z'
    """
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def change_id(basis: str, profile_id: str, segment_id: str, change: str) -> str:
    """Deterministic id of one change (32 hex digits)."""
    return hashlib.sha256("\x1f".join((basis, profile_id, segment_id, change)).encode()).hexdigest()[:32]


def record(
    profile_id: str, segment_id: str, kind: str, change: str, now: float, basis: str, reason: Mapping[str, Any]
) -> Change:
    """One ``segment-changes.v1`` record."""
    return {
        "schema_version": 1,
        "change_id": change_id(basis, profile_id, segment_id, change),
        "profile_id": profile_id,
        "segment_id": segment_id,
        "segment_kind": kind,
        "change": change,
        "at": iso(now),
        "reason": dict(reason),
    }


def diff(
    profile_id: str,
    state: State | None,
    decisions: Mapping[str, Decision],
    now: float,
    basis: str,
    kinds: Collection[str] = KINDS,
    exits: Mapping[str, Decision] | None = None,
) -> tuple[State, list[Change]]:
    """Apply a fresh evaluation to a profile's memberships.

    Parameters
    ----------
    profile_id, state
        The profile and its membership state (``None``: none yet).
    decisions
        Segment id -> :class:`Decision`: every segment of ``kinds`` the profile is in now.
    now
        Epoch seconds of the evaluation (the ``at`` of the records).
    basis
        What caused it (input position or timer), for ``change_id``.
    kinds
        Which kinds ``decisions`` covers: memberships of other kinds are left
        alone, so rules (per event) and clusters (per model step) can be diffed apart.
    exits
        Optional reasons of the exits (``evaluate(..., exits=...)`` fills them);
        otherwise an exit's reason is ``{"rule": ..., "no_longer_matched": true}``.

    Returns
    -------
    (State, list of dict)
        The new state (``state`` is not modified) and the changes, exits first,
        each group sorted by segment id.
    """
    current = segments(state)
    out: list[Change] = []
    new: dict[str, dict[str, Any]] = {}
    for seg, m in current.items():
        if m["kind"] not in kinds or seg in decisions:
            continue
        why = exits[seg].reason if exits and seg in exits else _exit_reason(m)
        out.append(record(profile_id, seg, m["kind"], "exited", now, basis, why))
    for seg, m in current.items():
        if m["kind"] not in kinds:
            new[seg] = m
    entered = []
    for seg, d in decisions.items():
        if seg in current and current[seg]["kind"] == d.kind:
            new[seg] = {**current[seg], "reason": d.reason}
        else:
            new[seg] = {"kind": d.kind, "since": now, "reason": d.reason}
            entered.append(record(profile_id, seg, d.kind, "entered", now, basis, d.reason))
    out.sort(key=lambda c: c["segment_id"])
    entered.sort(key=lambda c: c["segment_id"])
    return {"segments": new}, out + entered


def _exit_reason(m: Mapping[str, Any]) -> dict[str, Any]:
    prev = m.get("reason") or {}
    if m["kind"] == "cluster":
        return {"cluster": prev.get("cluster"), "no_longer_nearest": True}
    return {"rule": prev.get("rule"), "no_longer_matched": True}


def union(surviving: State | None, absorbed: Sequence[State | None]) -> State:
    """Memberships of all sides; a segment held by several keeps the earliest ``since``.

    >>> a = {"segments": {"x": {"kind": "rule", "since": 5.0, "reason": {}}}}
    >>> b = {"segments": {"x": {"kind": "rule", "since": 2.0, "reason": {}},
    ...                   "y": {"kind": "rule", "since": 7.0, "reason": {}}}}
    >>> {k: v["since"] for k, v in union(a, [b])["segments"].items()}
    {'x': 2.0, 'y': 7.0}
    """
    merged = segments(surviving)
    for other in absorbed:
        for seg, m in segments(other).items():
            if seg not in merged:
                merged[seg] = m
            elif m["since"] < merged[seg]["since"]:
                merged[seg] = {**merged[seg], "since": m["since"]}
    return {"segments": merged}


def merge_changes(
    surviving_id: str,
    surviving: State | None,
    absorbed: Mapping[str, State | None],
    decisions: Mapping[str, Decision],
    now: float,
    basis: str,
    kinds: Collection[str] = KINDS,
) -> tuple[State, list[Change]]:
    """Changes of an identity merge (see the module docstring).

    ``decisions`` is the evaluation of the merged profile (merged features and
    windows, with ``members=segments(union(surviving, absorbed.values()))``).
    Returns the survivor's new state (``since`` carried over from either side) and
    the changes: the absorbed profiles' exits (reason ``merged_into``), then the survivor's.

    >>> from app.segments.evaluate import Decision
    >>> a = {"segments": {"x": {"kind": "rule", "since": 1.0, "reason": {"rule": "x"}}}}
    >>> b = {"segments": {"y": {"kind": "rule", "since": 2.0, "reason": {"rule": "y"}}}}
    >>> s, out = merge_changes("p-1", a, {"p-2": b}, {"y": Decision("y", "rule", {"rule": "y"})}, 9.0, "m")
    >>> [(c["profile_id"], c["segment_id"], c["change"]) for c in out]
    [('p-2', 'y', 'exited'), ('p-1', 'x', 'exited'), ('p-1', 'y', 'entered')]
    >>> s["segments"]["y"]["since"]
    2.0
    """
    out: list[Change] = []
    for pid, state in absorbed.items():
        for seg, m in sorted(segments(state).items()):
            if m["kind"] in kinds:
                out.append(record(pid, seg, m["kind"], "exited", now, basis, {"merged_into": surviving_id}))
    new_state_, changes = diff(surviving_id, surviving, decisions, now, basis, kinds)
    carried = union(surviving, list(absorbed.values()))["segments"]
    for seg, m in new_state_["segments"].items():
        if seg in carried and carried[seg]["kind"] == m["kind"]:
            m["since"] = min(m["since"], carried[seg]["since"])
    return new_state_, out + changes


def split_changes(
    profile_id: str,
    state: State | None,
    parts: Mapping[str, Mapping[str, Decision]],
    now: float,
    basis: str,
    kinds: Collection[str] = KINDS,
) -> tuple[dict[str, State], list[Change]]:
    """Changes of an identity split: ``parts`` maps each resulting profile id to its evaluation.

    The old id exits everything when it is not among the parts (reason
    ``split_into``); a part with the old id is diffed against the old memberships;
    every other part starts empty and enters its segments.

    >>> from app.segments.evaluate import Decision
    >>> old = {"segments": {"x": {"kind": "rule", "since": 1.0, "reason": {"rule": "x"}}}}
    >>> states, out = split_changes("p-1", old, {"p-1": {"x": Decision("x", "rule")},
    ...                                          "p-9": {"x": Decision("x", "rule")}}, 5.0, "s")
    >>> [(c["profile_id"], c["segment_id"], c["change"]) for c in out]
    [('p-9', 'x', 'entered')]
    """
    out: list[Change] = []
    if profile_id not in parts:
        for seg, m in sorted(segments(state).items()):
            if m["kind"] in kinds:
                out.append(record(profile_id, seg, m["kind"], "exited", now, basis, {"split_into": sorted(parts)}))
    states: dict[str, State] = {}
    for pid in sorted(parts):
        prev = state if pid == profile_id else None
        states[pid], changes = diff(pid, prev, parts[pid], now, basis, kinds)
        out.extend(changes)
    return states, out


def erase_changes(profile_id: str, state: State | None, now: float, basis: str) -> list[Change]:
    """Exits of every segment of an erased profile (reason ``{"erased": true}``); the state is then deleted."""
    return [
        record(profile_id, seg, m["kind"], "exited", now, basis, {"erased": True})
        for seg, m in sorted(segments(state).items())
    ]


class MembershipHooks(KeepOnSplit[State]):
    """Merge is :func:`union`; split keeps the state with the part that kept the id; erase deletes."""

    def merge(self, surviving: State, absorbed: State) -> State:
        return union(surviving, [absorbed])
