"""Identity changes in the profiles stage: merges, splits, redirects and CRM traits, as pure functions.

The profiles table is partitioned by ``profile_id``, so the state of an absorbed
profile B and of its survivor A usually live on different partitions (and workers).
A merge therefore travels as records on ``<app_id>-profile-events``, each keyed by
the profile whose partition must act (all carry ``profile_id`` = their key):

``{"merge_out": {"change_id", "into": A}}`` (key B)
    from an ``identity-changes`` ``merged`` record, one per absorbed id
    (:func:`control_records`). At B, :func:`merge_out` hands B's value over as a
    ``merge_in`` for A and leaves a *tombstone* ``{"merged_into": A, ...}``.
``{"merge_in": {"change_id", "from": B, "state": value}}`` (key A)
    :func:`merge_in` folds the absorbed value into A with
    :class:`~app.profiles.state.ProfileStageHooks` and emits the segment changes
    (B exits its segments, reason ``merged_into``; A enters what the merged state
    qualifies for). With ``"split": true`` it carries a part of a split instead.
``{"split": {"change_id", "new_profile_ids"}}`` (key P)
    :func:`split`: shares P's state among the parts with the split hooks.
``{"revive": {"change_id", "from": P}}`` (key Q, each new id of a split)
    an id a split creates may be one an earlier merge absorbed (part ids derive from
    identifier hashes, as an anonymous profile's id does): :func:`revive` turns its
    tombstone back into an empty profile, so its new events stop going to the old survivor.
``{"traits": {"age_band", "city", "state", "country"}, "ts": t}`` (key P)
    the bands of a CRM record resolved to P (:func:`traits`).

Exactness under replay (at-least-once delivery of every record above):

* a tombstone is final and keeps the offset of the last record it handled, so a
  replayed record is skipped, and any newer record for B (an event ingest stamped
  with B before the alias update reached it, a ``merge_in`` of a chain B←X) is
  re-addressed to A (:func:`redirect`); chains B→A→C follow hop by hop;
* a profile remembers the last :data:`MAX_CHANGE_IDS` handovers applied to it
  (:func:`handover_id`: the change id *and* the profile the state came from; its own
  and those of the values it absorbed), so a ``merge_in`` sent twice is a no-op, while
  the several ``merge_in`` of one change that absorbed several profiles all apply;
* after a merge every part's source offset is the ``merge_in`` record's offset in
  A's partition (the absorbed offsets belong to another partition and would
  otherwise make A skip its own newer events), and the recent event ids of both
  sides are kept, so an event applied at B and sent again to A counts once.

Examples
--------
>>> from app.sessions.state import ev
>>> from app.profiles import state as profile_stage
>>> b, _ = profile_stage.apply_event(None, ev("e1", 1000.0), offset=7, partition=1, profile_id="p-b")
>>> a, _ = profile_stage.apply_event(None, ev("e2", 1100.0), offset=3, partition=0, profile_id="p-a")
>>> [(key, list(env)) for key, env in control_records(
...     {"change": "merged", "change_id": "c1", "profile_id": "p-a", "absorbed_profile_ids": ["p-b"]})]
[('p-b', ['profile_id', 'merge_out'])]
>>> tomb, handover = merge_out(b, {"change_id": "c1", "into": "p-a"}, "p-b", offset=8, partition=1)
>>> tomb["merged_into"], handover["profile_id"]
('p-a', 'p-a')
>>> a, out, outcome = merge_in(a, handover["merge_in"], offset=4, partition=0, profile_id="p-a", now=1200.0)
>>> outcome, a["profile"]["events"], a["profile"]["offset"], a["merges"]
('merged', 2, 4, ['c1:p-b'])
>>> merge_in(a, handover["merge_in"], offset=5, partition=0, profile_id="p-a", now=1200.0)[2]
'duplicate'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from app.events import dedupe
from app.identity.hashing import profile_id_for
from app.profiles import state as profile_stage
from app.profiles import unified as profile
from app.profiles.features import rule_features
from app.segments import membership
from app.segments import state as segments
from app.segments.evaluate import evaluate_and_schedule
from app.sessions import state as sessions
from tables.hooks import State

#: How many applied change ids a profile remembers (merges are rare per profile).
MAX_CHANGE_IDS: Final = 64

Envelope = dict[str, Any]
MergeOutcome = Literal["merged", "duplicate", "replayed"]


def is_tombstone(value: Any) -> bool:
    """Whether a profiles-table value is the tombstone of an absorbed profile.

    >>> is_tombstone({"merged_into": "p-a"}), is_tombstone({"profile": {}}), is_tombstone(None)
    (True, False, False)
    """
    return isinstance(value, Mapping) and "merged_into" in value


def empty(partition: int) -> State:
    """A profile with no events yet (a survivor or a trait holder seen first through identity)."""
    return {
        "sessions": sessions.new_state(),
        "profile": profile.new_state(),
        "segments": segments.new_state(),
        "partition": partition,
        "next_eval_at": None,
    }


def control_records(change: Mapping[str, Any]) -> list[tuple[str, Envelope]]:
    """The profile-events records an ``identity-changes`` record asks for, with their keys.

    ``merged``: a ``merge_out`` to each absorbed profile (its partition owns its state);
    ``split``: a ``split`` to the split profile and a ``revive`` to each new id; other changes: nothing.

    >>> for key, record in control_records(
    ...         {"change": "split", "change_id": "c2", "profile_id": "p-a", "new_profile_ids": ["p-a", "p-z"]}):
    ...     print(key, record)
    p-a {'profile_id': 'p-a', 'split': {'change_id': 'c2', 'new_profile_ids': ['p-a', 'p-z']}}
    p-z {'profile_id': 'p-z', 'revive': {'change_id': 'c2', 'from': 'p-a'}}
    >>> control_records({"change": "refused", "change_id": "c3", "profile_id": "p-a"})
    []
    """
    kind, pid, cid = change.get("change"), str(change["profile_id"]), str(change["change_id"])
    if kind == "merged":
        return [
            (str(b), {"profile_id": str(b), "merge_out": {"change_id": cid, "into": pid}})
            for b in change.get("absorbed_profile_ids", ())
            if b != pid
        ]
    if kind == "split":
        new_ids = [str(q) for q in change.get("new_profile_ids", ())]
        return [
            (pid, {"profile_id": pid, "split": {"change_id": cid, "new_profile_ids": new_ids}}),
            *((q, {"profile_id": q, "revive": {"change_id": cid, "from": pid}}) for q in new_ids if q != pid),
        ]
    return []


def provisional_merge(anon_hash: str, profile_id: str) -> tuple[str, Envelope] | None:
    """The ``merge_out`` that moves an anonymous id's provisional profile into its first real one.

    Before its first alias, ingest stamps an anonymous id's events with
    ``profile_id_for(hash)``, the id a profile created from it alone gets. When the resolver
    created or chose another profile (the first event carried a user id, say), no
    ``identity-changes`` record names the provisional id, so the alias stage sends this
    (:func:`follow_alias`). Its change id is stable per anonymous id, so sending it again is a no-op.

    >>> from app.identity.hashing import profile_id_for
    >>> provisional_merge("h1", profile_id_for("h1")) is None
    True
    >>> key, record = provisional_merge("h1", "p-1")
    >>> key == profile_id_for("h1"), record["merge_out"]
    (True, {'change_id': 'provisional:h1', 'into': 'p-1'})
    """
    provisional = profile_id_for(anon_hash)
    if provisional == profile_id:
        return None
    return provisional, {"profile_id": provisional,
                         "merge_out": {"change_id": f"provisional:{anon_hash}", "into": profile_id}}


def follow_alias(
    current: State | None, anon_hash: str, profile_id: str, offset: int
) -> tuple[State | None, tuple[str, Envelope] | None]:
    """An alias record at the alias table: the entry to write now, and a handover to send after it.

    The handover is the provisional profile's ``merge_out`` (:func:`provisional_merge`) on an
    anonymous id's first alias. Ingest reads the alias table in the same worker (it is
    co-partitioned with the clickstream), so writing the entry *before* sending the
    ``merge_out`` puts every event ingest stamped with the provisional id ahead of it in
    that profile's partition: none arrives after the tombstone, none is redirected to a
    survivor whose sessions have moved on (and then counted late). The entry keeps the
    handover under ``"handover"`` until the caller has the broker's acknowledgement and
    writes the entry again without it; a replay of a record whose entry still holds one
    sends it again (a no-op at the provisional profile).

    Returns ``(None, None)`` for a replay with nothing pending.

    >>> entry, send = follow_alias(None, "h1", "p-1", offset=3)
    >>> entry["profile_id"], entry["offset"], send == tuple(entry["handover"]) == provisional_merge("h1", "p-1")
    ('p-1', 3, True)
    >>> follow_alias(entry, "h1", "p-1", offset=3)[1] == send   # replayed before the ack was written
    True
    >>> done = {k: v for k, v in entry.items() if k != "handover"}
    >>> follow_alias(done, "h1", "p-1", offset=3), follow_alias(done, "h1", "p-2", offset=9)
    ((None, None), ({'profile_id': 'p-2', 'offset': 9}, None))
    """
    pending = current.get("handover") if current is not None else None
    handover = (pending[0], pending[1]) if pending else None
    if current is not None and offset <= int(current["offset"]):
        return (current, handover) if handover else (None, None)
    if current is None:
        handover = provisional_merge(anon_hash, profile_id)
    entry: State = {"profile_id": profile_id, "offset": offset}
    if handover is not None:
        entry["handover"] = list(handover)
    return entry, handover


def merge_out(
    value: State | None, payload: Mapping[str, Any], profile_id: str, offset: int, partition: int
) -> tuple[State, Envelope | None]:
    """At the absorbed profile: its tombstone, and the ``merge_in`` to send to the survivor.

    The caller sends the ``merge_in`` and waits for the broker's acknowledgement
    *before* writing the tombstone: a crash in between replays this record, which
    finds the old value and sends the same ``merge_in`` again (a no-op at the
    survivor). A profile already absorbed sends nothing; one without state sends
    nothing either but still gets a tombstone, so records stamped with it are
    redirected.

    >>> merge_out({"merged_into": "p-a", "offset": 9}, {"change_id": "c1", "into": "p-a"}, "p-b", 12, 0)
    ({'merged_into': 'p-a', 'offset': 9}, None)
    >>> merge_out(None, {"change_id": "c1", "into": "p-a"}, "p-b", 12, 0)
    ({'merged_into': 'p-a', 'change_id': 'c1', 'offset': 12, 'partition': 0}, None)
    """
    into, cid = str(payload["into"]), str(payload["change_id"])
    if is_tombstone(value) or cid in (value or {}).get("merges", ()):
        # Already handed over; or revived by a split after this merge (a replayed old change).
        return dict(value or {}), None
    tombstone: State = {"merged_into": into, "change_id": cid, "offset": offset, "partition": partition}
    if value is None:
        return tombstone, None
    return tombstone, {"profile_id": into, "merge_in": {"change_id": cid, "from": profile_id, "state": value}}


def redirect(tombstone: State, envelope: Mapping[str, Any], offset: int) -> tuple[State, Envelope] | None:
    """A record that reached an absorbed profile: the tombstone now covering ``offset``, and the
    record re-addressed to the survivor; ``None`` for a replay (at or below the tombstone's offset).

    >>> tomb = {"merged_into": "p-a", "change_id": "c1", "offset": 12, "partition": 0}
    >>> moved, record = redirect(tomb, {"profile_id": "p-b", "ts": 5.0, "event": {}}, 13)
    >>> moved["offset"], record
    (13, {'profile_id': 'p-a', 'ts': 5.0, 'event': {}, 'redirected_from': 'p-b'})
    >>> redirect(tomb, {"profile_id": "p-b"}, 12) is None
    True
    """
    if offset <= int(tombstone["offset"]):
        return None
    first = envelope.get("redirected_from", envelope["profile_id"])  # a chain keeps the first hop
    return {**tombstone, "offset": offset}, {**envelope, "profile_id": str(tombstone["merged_into"]),
                                             "redirected_from": first}


def merge_cause(tombstone: State) -> str:
    """``provisional`` when the tombstone is an anonymous id's provisional profile, else ``merged``.

    >>> merge_cause({"merged_into": "p-a", "change_id": "provisional:h1"}), merge_cause({"change_id": "c1"})
    ('provisional', 'merged')
    """
    return "provisional" if str(tombstone.get("change_id", "")).startswith("provisional:") else "merged"


def handover_id(payload: Mapping[str, Any]) -> str:
    """What a profile remembers of a ``merge_in`` it applied: the change id and the profile the state came from.

    One ``merged`` change can absorb several profiles at once (an observation that links two
    anonymous profiles to a third): each absorbed profile sends its own ``merge_in`` with the
    change's id, so the change id alone would take the second for a repeat of the first and
    drop its events.

    >>> handover_id({"change_id": "c1", "from": "p-b"}), handover_id({"change_id": "c1", "from": "p-c"})
    ('c1:p-b', 'c1:p-c')
    """
    return f"{payload['change_id']}:{payload['from']}"


def merge_in(
    value: State | None,
    payload: Mapping[str, Any],
    offset: int,
    partition: int,
    profile_id: str,
    now: float,
    config: profile_stage.StageConfig = profile_stage.DEFAULT,
) -> tuple[State, profile_stage.Outputs, MergeOutcome]:
    """At the survivor: fold an absorbed value (or a split part) in, and the segment changes.

    ``now`` is the stream time the merged profile's rule segments are evaluated at.
    Open sessions combine with the sessions hook; closed sessions are not emitted again.
    The changes' ids derive from the change id, so a merge applied again after a lost
    state write emits the same ids.
    """
    current = value if value is not None else empty(partition)
    cid, applied = str(payload["change_id"]), handover_id(payload)
    if applied in current.get("merges", ()):
        return current, profile_stage.Outputs(), "duplicate"
    if offset <= current["profile"]["offset"]:
        return current, profile_stage.Outputs(), "replayed"
    absorbed: State | None = payload.get("state")
    merged = current
    if absorbed is not None:
        merged = profile_stage.HOOKS.merge(current, absorbed)
        merged = _rebase(merged, current, absorbed, offset)
    merged = {**merged, "partition": partition,
              "merges": _bounded([*current.get("merges", ()), *(absorbed or {}).get("merges", ()), applied])}

    before = current["segments"]["members"]
    taken = (absorbed or {}).get("segments", {}).get("members") or membership.new_state()
    seg = merged["segments"]
    decisions, next_at = evaluate_and_schedule(
        config.rules, rule_features(merged["profile"], now), seg["windows"], now,
        membership.segments(membership.union(before, [taken])),
    )
    members, changes = membership.merge_changes(
        profile_id, before, {str(payload["from"]): taken}, decisions, now, f"identity:{cid}", kinds=("rule",)
    )
    if payload.get("split"):
        # A part of a split: the old profile keeps existing, it exits nothing here.
        changes = [c for c in changes if c["profile_id"] == profile_id]
    merged = {**merged, "segments": {**seg, "members": members}, "next_eval_at": next_at}
    return merged, profile_stage.Outputs([], changes), "merged"


def split(
    value: State | None,
    payload: Mapping[str, Any],
    profile_id: str,
    now: float,
    config: profile_stage.StageConfig = profile_stage.DEFAULT,
) -> tuple[State | None, list[Envelope], profile_stage.Outputs]:
    """At a split profile: the part it keeps, the parts to send to the new ids, the segment changes.

    The split profile always keeps its id (the part holding its origin identifier,
    :mod:`app.identity.split`). The hooks cannot attribute events, sessions or
    windows to parts (the state is not kept per anonymous id), so today every part
    stays with the kept id and the new ids start empty; the sends exist for hooks
    that can attribute.

    >>> from app.sessions.state import ev
    >>> v, _ = profile_stage.apply_event(None, ev("e1", 1000.0), offset=7, partition=1, profile_id="p-a")
    >>> kept, sends, out = split(v, {"change_id": "c2", "new_profile_ids": ["p-z"]}, "p-a", now=1100.0)
    >>> kept["profile"]["events"], sends, out.segment_changes, kept["merges"]
    (1, [], [], ['c2'])
    """
    if value is None or is_tombstone(value):
        return value, [], profile_stage.Outputs()
    cid = str(payload["change_id"])
    if cid in value.get("merges", ()):
        return value, [], profile_stage.Outputs()
    new_ids = list(dict.fromkeys([profile_id, *payload.get("new_profile_ids", ())]))
    parts = profile_stage.HOOKS.split(value, profile_id, new_ids)
    kept = {**value, **parts.get(profile_id, empty(value["partition"])),
            "merges": _bounded([*value.get("merges", ()), cid])}
    sends = [
        {"profile_id": pid, "merge_in": {"change_id": cid, "from": profile_id, "state": part, "split": True}}
        for pid, part in sorted(parts.items())
        if pid != profile_id
    ]
    kept, changes = profile_stage.evaluate(kept, profile_id, now, f"identity:{cid}", config)
    return kept, sends, profile_stage.Outputs([], changes)


def revive(value: State | None, payload: Mapping[str, Any], offset: int, partition: int) -> State | None:
    """A new id of a split that is a tombstone: an empty profile again; ``None`` when nothing changes.

    Its part offsets are the revive record's, so records redirected before (and replayed now)
    are not applied a second time; it remembers the merge that absorbed it, so that merge's
    ``merge_out`` replayed later does not absorb it again.

    >>> tomb = {"merged_into": "p-a", "change_id": "c1", "offset": 12, "partition": 0}
    >>> back = revive(tomb, {"change_id": "c2", "from": "p-a"}, 20, 0)
    >>> back["profile"]["events"], back["profile"]["offset"], back["merges"]
    (0, 20, ['c1', 'c2'])
    >>> merge_out(back, {"change_id": "c1", "into": "p-a"}, "p-b", 22, 0)[1] is None
    True
    >>> revive(back, {"change_id": "c2", "from": "p-a"}, 21, 0), revive(tomb, {"change_id": "c2"}, 12, 0)
    (None, None)
    """
    tomb: State = value or {}
    if not is_tombstone(tomb) or offset <= int(tomb["offset"]):
        return None
    fresh = empty(partition)
    seg = fresh["segments"]
    return {**fresh, "sessions": {**fresh["sessions"], "offset": offset},
            "profile": {**fresh["profile"], "offset": offset},
            "segments": {**seg, "windows": {**seg["windows"], "offset": offset}},
            "merges": _bounded([str(tomb["change_id"]), str(payload["change_id"])])}


def traits(value: State | None, bands: Mapping[str, Any], ts: float, partition: int) -> State:
    """A profile with the trait bands of a CRM record known at ``ts`` (last writer wins, idempotent).

    >>> traits(None, {"city": "Leeds", "age_band": "25-34"}, ts=5.0, partition=0)["profile"]["traits"]
    {'city': 'Leeds', 'age_band': '25-34'}
    """
    current = value if value is not None else empty(partition)
    return {**current, "profile": profile.apply_bands(current["profile"], bands, ts)}


def _bounded(change_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(change_ids))[-MAX_CHANGE_IDS:]


def _rebase(merged: State, survivor: State, absorbed: State, offset: int) -> State:
    """Offsets of the merge record's partition; the recent event ids of both sides, interleaved.

    The ids are kept in the profile part only (see :func:`app.profiles.state.apply_event`);
    a sessions part from before that keeps its own has the same ids and gives them up here.
    Interleaved by recency (:func:`app.events.dedupe.interleave`), the window the next event trims
    keeps the newest ids of both sides: the absorbed profile's last events, sent again to the
    survivor by an ingest replay, still count once.
    """
    recent = dedupe.interleave(*(dedupe.union(*(side[name].get("recent_ids", "") for name in ("profile", "sessions")))
                                 for side in (absorbed, survivor)))
    sessions_part = {k: v for k, v in merged["sessions"].items() if k != "recent_ids"}
    seg = merged["segments"]
    return {**merged, "sessions": {**sessions_part, "offset": offset},
            "profile": {**merged["profile"], "offset": offset, "recent_ids": recent},
            "segments": {**seg, "windows": {**seg["windows"], "offset": offset}}}
