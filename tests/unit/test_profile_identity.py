"""Identity merges, splits, redirects and CRM traits in the profiles stage (app/profiles/merges.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from app.profiles import merges as profile_identity
from app.profiles import state as profile_stage
from app.profiles import unified as profile
from app.runtime.rebuild import stale_keys
from app.serving import keys as serving
from app.sessions.state import ev
from tables.hooks import State

SEGMENT_SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "segment-changes.v1.json").read_text())
T0 = 1_700_000_000.0


def views(profile_id: str, partition: int, ids: list[str], first_offset: int, start: float = T0) -> State:
    """A profile with one product view per id, a minute apart, at consecutive offsets."""
    value: State | None = None
    for i, event_id in enumerate(ids):
        event = ev(event_id, start + 60 * i, "product_view", product_id="p1", category="shoes", price=10.0)
        value, _ = profile_stage.apply_event(value, event, first_offset + i, partition, profile_id)
    assert value is not None
    return value


def merge(survivor: State | None, absorbed: State | None, offset: int, change_id: str = "c1",
          into: str = "p-a", absorbed_id: str = "p-b", partition: int = 0) -> tuple[State, Any, str]:
    tomb, handover = profile_identity.merge_out(
        absorbed, {"change_id": change_id, "into": into}, absorbed_id, offset=100, partition=1
    )
    assert profile_identity.is_tombstone(tomb)
    payload = handover["merge_in"] if handover else {"change_id": change_id, "from": absorbed_id, "state": None}
    return profile_identity.merge_in(survivor, payload, offset, partition, into, now=T0 + 600)


def test_a_merge_combines_counts_and_open_sessions_and_keeps_the_survivors_partition_offsets() -> None:
    a = views("p-a", 0, ["a1", "a2"], first_offset=3)
    b = views("p-b", 1, ["b1", "b2"], first_offset=500, start=T0 + 5)
    merged, _, outcome = merge(a, b, offset=5)
    assert outcome == "merged"
    assert merged["profile"]["events"] == 4 and merged["profile"]["counts"] == {"product_view": 4}
    assert [s["events"] for s in merged["sessions"]["open"]] == [4]  # overlapping sessions coalesce
    # B's offsets (500+) are from another partition: the survivor must not skip its own offset 6.
    assert merged["profile"]["offset"] == merged["sessions"]["offset"] == 5
    assert merged["segments"]["windows"]["offset"] == 5 and merged["partition"] == 0
    after, _ = profile_stage.apply_event(merged, ev("a3", T0 + 300, "product_view"), 6, 0, "p-a")
    assert after["profile"]["events"] == 5


def test_a_repeated_merge_in_is_a_no_op_whatever_its_offset() -> None:
    a = views("p-a", 0, ["a1"], first_offset=3)
    b = views("p-b", 1, ["b1"], first_offset=9)
    _, handover = profile_identity.merge_out(b, {"change_id": "c1", "into": "p-a"}, "p-b", 10, 1)
    assert handover is not None
    once, _, _ = profile_identity.merge_in(a, handover["merge_in"], 4, 0, "p-a", now=T0)
    again, out, outcome = profile_identity.merge_in(once, handover["merge_in"], 7, 0, "p-a", now=T0)
    assert (outcome, again, out.segment_changes) == ("duplicate", once, [])
    replayed = profile_identity.merge_in(once, {**handover["merge_in"], "change_id": "c9"}, 4, 0, "p-a", now=T0)
    assert replayed[2] == "replayed"


def test_a_merge_out_sent_twice_hands_over_once() -> None:
    b = views("p-b", 1, ["b1"], first_offset=9)
    tomb, handover = profile_identity.merge_out(b, {"change_id": "c1", "into": "p-a"}, "p-b", 10, 1)
    assert handover is not None and handover["merge_in"]["state"] == b
    assert profile_identity.merge_out(tomb, {"change_id": "c1", "into": "p-a"}, "p-b", 11, 1) == (tomb, None)


def test_records_for_an_absorbed_profile_are_redirected_once_and_counted_once() -> None:
    tomb, _ = profile_identity.merge_out(None, {"change_id": "c1", "into": "p-a"}, "p-b", 10, 1)
    late = {"profile_id": "p-b", "ts": T0, "event": {"event_id": "late-1"}}
    moved = profile_identity.redirect(tomb, late, 11)
    assert moved is not None
    tomb, forward = moved
    assert forward["profile_id"] == "p-a" and tomb["offset"] == 11
    assert profile_identity.redirect(tomb, late, 11) is None  # a replay of the same offset

    # The redirect's send was lost with the tombstone write: it is sent again at a new offset.
    a = views("p-a", 0, ["a1"], first_offset=3)
    event = ev("late-1", T0 + 30, "product_view", product_id="p1", category="shoes")
    once, _ = profile_stage.apply_event(a, event, 4, 0, "p-a")
    twice, out = profile_stage.apply_event(once, event, 5, 0, "p-a")
    assert twice["profile"]["events"] == 2
    assert twice["sessions"]["open"][0]["events"] == 2
    assert twice["segments"]["windows"] == once["segments"]["windows"]
    assert out.segment_changes == []


def test_an_event_applied_at_the_absorbed_profile_and_sent_again_to_the_survivor_counts_once() -> None:
    a = views("p-a", 0, ["a1"], first_offset=3)
    b = views("p-b", 1, ["b1", "b2"], first_offset=40)
    merged, _, _ = merge(a, b, offset=4)
    # Ingest replays b2 after a crash and now stamps it with the survivor.
    again, _ = profile_stage.apply_event(merged, ev("b2", T0 + 60, "product_view"), 5, 0, "p-a")
    assert again["profile"]["events"] == merged["profile"]["events"] == 3
    assert again["segments"]["windows"] == merged["segments"]["windows"]


def test_a_chain_b_into_a_then_a_into_c_ends_with_everything_in_c() -> None:
    b = views("p-b", 1, ["b1"], first_offset=20)
    a = views("p-a", 0, ["a1"], first_offset=3)
    c = views("p-c", 2, ["c1"], first_offset=7)
    _, hand_b = profile_identity.merge_out(b, {"change_id": "c-ba", "into": "p-a"}, "p-b", 21, 1)
    # A is absorbed by C before B's state reaches A.
    tomb_a, hand_a = profile_identity.merge_out(a, {"change_id": "c-ac", "into": "p-c"}, "p-a", 4, 0)
    assert hand_b is not None and hand_a is not None
    moved = profile_identity.redirect(tomb_a, hand_b, 5)
    assert moved is not None and moved[1]["profile_id"] == "p-c"
    c, _, _ = profile_identity.merge_in(c, hand_a["merge_in"], 8, 2, "p-c", now=T0)
    c, _, _ = profile_identity.merge_in(c, moved[1]["merge_in"], 9, 2, "p-c", now=T0)
    assert c["profile"]["events"] == 3 and c["merges"] == ["c-ac:p-a", "c-ba:p-b"]
    assert profile_identity.merge_in(c, moved[1]["merge_in"], 10, 2, "p-c", now=T0)[2] == "duplicate"


def test_change_ids_absorbed_with_a_state_stay_remembered_by_the_survivor() -> None:
    b, _, _ = merge(views("p-b", 1, ["b1"], 20), views("p-x", 3, ["x1"], 2), 22, "c-xb", "p-b", "p-x", 1)
    a, _, _ = merge(views("p-a", 0, ["a1"], 3), b, 4, "c-ba")
    # X's hand-over replayed after a lost tombstone write reaches A through B's tombstone.
    assert profile_identity.merge_in(a, {"change_id": "c-xb", "from": "p-x", "state": {}}, 5, 0, "p-a", T0)[2] \
        == "duplicate"


def test_a_merge_emits_the_absorbed_exits_and_what_the_combined_state_enters() -> None:
    a = views("p-a", 0, ["a1", "a2"], first_offset=3)
    b = views("p-b", 1, ["b1", "b2"], first_offset=30, start=T0 + 1)
    assert "highly_engaged" not in a["segments"]["members"]["segments"]  # 2 views each: not > 3
    merged, out, _ = merge(a, b, offset=5)
    changes = {(c["profile_id"], c["segment_id"], c["change"]): c for c in out.segment_changes}
    assert changes[("p-b", "new_visitor", "exited")]["reason"] == {"merged_into": "p-a"}
    assert ("p-a", "highly_engaged", "entered") in changes
    assert not any(pid == "p-a" and change == "exited" for pid, _, change in changes)
    for change in out.segment_changes:
        jsonschema.validate(change, SEGMENT_SCHEMA)
    assert "highly_engaged" in merged["segments"]["members"]["segments"]
    # Same change, state lost and applied again: the same change ids.
    _, again, _ = merge(a, b, offset=5)
    assert [c["change_id"] for c in again.segment_changes] == [c["change_id"] for c in out.segment_changes]


def test_a_merge_into_a_profile_without_state_moves_the_state_whole() -> None:
    b = views("p-b", 1, ["b1"], first_offset=30)
    merged, out, _ = merge(None, b, offset=0)
    assert merged["profile"]["events"] == 1 and merged["profile"]["offset"] == 0
    assert {(c["profile_id"], c["change"]) for c in out.segment_changes} >= {("p-b", "exited"), ("p-a", "entered")}


def test_control_records_ask_each_absorbed_profile_to_hand_over() -> None:
    change = {"change": "merged", "change_id": "c1", "profile_id": "p-a", "absorbed_profile_ids": ["p-b", "p-c"]}
    assert [(k, e["merge_out"]) for k, e in profile_identity.control_records(change)] == [
        ("p-b", {"change_id": "c1", "into": "p-a"}), ("p-c", {"change_id": "c1", "into": "p-a"})]


def test_a_split_keeps_the_state_with_the_kept_id_and_is_applied_once() -> None:
    value = views("p-a", 0, ["a1", "a2"], first_offset=3)
    kept, sends, out = profile_identity.split(value, {"change_id": "s1", "new_profile_ids": ["p-z"]}, "p-a", T0)
    assert kept is not None and kept["profile"] == value["profile"] and sends == [] and out.segment_changes == []
    again = profile_identity.split(kept, {"change_id": "s1", "new_profile_ids": ["p-z"]}, "p-a", T0)
    assert again[0] is kept and again[1] == []


def test_a_split_part_arriving_at_a_new_id_enters_its_segments_without_exits_for_the_old() -> None:
    part = views("p-a", 0, ["a1"], first_offset=3)
    payload = {"change_id": "s1", "from": "p-a", "state": part, "split": True}
    value, out, _ = profile_identity.merge_in(None, payload, 0, 2, "p-z", now=T0 + 60)
    assert value["profile"]["events"] == 1
    assert out.segment_changes and all(c["profile_id"] == "p-z" for c in out.segment_changes)


def test_crm_traits_keep_only_bands_and_the_newest_record_wins() -> None:
    bands = profile.trait_bands({"first_name": "Ann", "email": "a@b.c", "date_of_birth": "1990-06-01",
                                 "city": "Leeds", "postcode": "LS1"}, at=T0)
    assert bands == {"age_band": "25-34", "city": "Leeds"}
    value = profile_identity.traits(None, bands, T0, partition=0)
    value = profile_identity.traits(value, {"city": "York"}, T0 - 10, partition=0)
    assert value["profile"]["traits"] == {"age_band": "25-34", "city": "Leeds"}
    assert profile_identity.traits(value, bands, T0, partition=0) == value
    served = profile_stage.serving(value, T0)
    assert served["traits"] == {"age_band": "25-34", "city": "Leeds"}


def test_an_absorbed_profile_is_served_as_merged_into_and_rebuild_deletes_only_stale_keys() -> None:
    tomb, _ = profile_identity.merge_out(None, {"change_id": "c1", "into": "p-a"}, "p-b", 10, 1)
    entries = dict(serving.profile_entries("p-b", tomb, T0))
    assert entries == {"persona:profile:p-b": {"merged_into": "p-a"},
                       "persona:profile:p-b:identity": {"merged_into": "p-a"}}
    deleted = {"identity": {"p/p-b", "p/p-gone"}, "profiles": {"p-gone"}}
    assert stale_keys(deleted, entries) == ["persona:profile:p-gone", "persona:profile:p-gone:identity"]


def test_a_split_that_recreates_an_absorbed_id_revives_it_empty_and_skips_what_was_redirected() -> None:
    split_change = {"change": "split", "change_id": "s1", "profile_id": "p-a", "new_profile_ids": ["p-a", "p-b"]}
    assert [k for k, e in profile_identity.control_records(split_change) if "revive" in e] == ["p-b"]
    tomb, _ = profile_identity.merge_out(views("p-b", 1, ["b1"], 20), {"change_id": "c1", "into": "p-a"},
                                         "p-b", 21, 1)
    moved = profile_identity.redirect(tomb, {"profile_id": "p-b", "ts": T0, "event": {}}, 22)
    assert moved is not None
    revived = profile_identity.revive(moved[0], {"change_id": "s1", "from": "p-a"}, 23, 1)
    assert revived is not None and not profile_identity.is_tombstone(revived)
    # The event redirected at offset 22, read again after a crash, is not applied here too.
    replayed, _ = profile_stage.apply_event(revived, ev("b2", T0), 22, 1, "p-b")
    assert replayed["profile"]["events"] == 0
    fresh, _ = profile_stage.apply_event(revived, ev("b3", T0), 24, 1, "p-b")
    assert fresh["profile"]["events"] == 1


def test_a_provisional_profile_stamped_before_the_first_alias_is_handed_to_the_resolved_profile() -> None:
    from app.identity.hashing import profile_id_for
    from app.identity.stream import alias_updates, note_anonymous_id

    base: dict[str, Any] = {"p/p-u": {"identifiers": {"h-anon": "anonymous_id", "h-user": "user_id"}}}
    note_anonymous_id(base, "h-anon", 0)
    assert alias_updates(base, ["p-u"]) == [("h-anon", "p-u", 0)]
    entry, merge_out = profile_identity.follow_alias(None, "h-anon", "p-u", offset=0)
    assert entry is not None and merge_out is not None
    # The next alias of the same anonymous id (a later merge) hands nothing over.
    assert profile_identity.follow_alias({"profile_id": "p-u", "offset": 0}, "h-anon", "p-v", 1)[1] is None
    key, envelope = merge_out
    assert key == profile_id_for("h-anon") and envelope["merge_out"]["into"] == "p-u"
    provisional = views(key, 1, ["s1"], first_offset=4)
    _, handover = profile_identity.merge_out(provisional, envelope["merge_out"], key, 5, 1)
    assert handover is not None
    merged, _, _ = profile_identity.merge_in(None, handover["merge_in"], 0, 0, "p-u", now=T0)
    assert merged["profile"]["events"] == 1


def drain(docs: list[dict[str, Any]], table: dict[str, Any], first: int = 0) -> dict[str, Any]:
    """``docs`` as one partition of profile-events from offset ``first`` through the stage's fold, one
    record per batch; each batch's handovers appended to the partition (as the agent sends them),
    until none is left."""
    from app.profiles.fold import Record, StageMemory, fold

    log, memory, offset = [orjson.dumps(doc) for doc in docs], StageMemory(), 0
    while offset < len(log):
        batch = fold([Record("profile-events", 0, first + offset, log[offset])], table, memory, wall=T0)
        log += [orjson.dumps(handover) for handover in batch.handovers]
        batch.write_to(table)
        offset += 1
    return table


def stamped(profile_id: str, event_id: str, ts: float) -> dict[str, Any]:
    return {"profile_id": profile_id, "ts": ts, "event": ev(event_id, ts, "product_view").data}


def test_a_merge_that_absorbs_two_profiles_at_once_keeps_the_events_of_both() -> None:
    # One observation linking two anonymous profiles to a new one: ONE change id, two absorbed
    # profiles, two merge_in at the survivor (seed 19 of the simulator has three such merges).
    change = {"change": "merged", "change_id": "c1", "profile_id": "p-a", "absorbed_profile_ids": ["p-b", "p-c"]}
    docs = [stamped("p-b", "b1", T0), stamped("p-b", "b2", T0 + 60), stamped("p-c", "c1", T0 + 30),
            *(envelope for _, envelope in profile_identity.control_records(change))]
    table = drain(docs, {})
    assert table["p-a"]["profile"]["events"] == 3
    assert profile_identity.is_tombstone(table["p-b"]) and profile_identity.is_tombstone(table["p-c"])


def test_an_event_of_the_absorbed_profile_sent_again_after_the_merge_counts_once_whatever_came_between() -> None:
    # An ingest replay after a kill forwards its events again, stamped with the alias it reads now:
    # an event applied at the provisional p-b comes again to p-a after p-b was merged into it.
    change = {"change": "merged", "change_id": "c1", "profile_id": "p-a", "absorbed_profile_ids": ["p-b"]}
    b_events = [stamped("p-b", f"b{i}", T0 + i) for i in range(10)]
    table = drain([*b_events, *(stamped("p-a", f"a{i}", T0 + i) for i in range(60)),
                   *(envelope for _, envelope in profile_identity.control_records(change))], {})
    assert table["p-a"]["profile"]["events"] == 70
    # p-a's own events go on, then the replayed ones: 70 ids of both sides, a window of 64.
    replayed = [{**doc, "profile_id": "p-a"} for doc in b_events]
    table = drain([stamped("p-a", "a-after", T0 + 100), *replayed], table, first=100)
    assert table["p-a"]["profile"]["events"] == 71
