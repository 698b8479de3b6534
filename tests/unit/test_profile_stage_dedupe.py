"""One record of recent event ids per profiles-table value (app/profiles/state.py), old values included."""

from __future__ import annotations

from typing import Any

import orjson

from app.events import dedupe
from app.profiles import merges as profile_identity
from app.profiles import state as profile_stage
from app.sessions import state as sessions
from app.sessions.state import ev
from tables.hooks import State
from tests.unit.test_dedupe import legacy_digest

T0 = 1_700_000_000.0
DIGESTED = [f"e{i}" for i in range(100)]


def fold(ids: list[str], first_offset: int = 0, value: State | None = None, profile_id: str = "p-a",
         partition: int = 0) -> State:
    for i, event_id in enumerate(ids):
        event = ev(event_id, T0 + 60 * i, "product_view", product_id="p1", category="shoes", price=10.0)
        value, _ = profile_stage.apply_event(value, event, first_offset + i, partition, profile_id)
    assert value is not None
    return value


def as_written_before(value: State, event_ids: list[str]) -> State:
    """``value`` (folded from ``event_ids``) as stored before the packed ids: a digest list in both parts."""
    old_ids = [legacy_digest(i) for i in event_ids]
    return {**value, "sessions": {**value["sessions"], "recent_ids": old_ids},
            "profile": {**value["profile"], "recent_ids": list(old_ids)}}


def test_the_profile_part_keeps_the_one_record_of_ids_and_decides_for_the_sessions() -> None:
    value = fold(DIGESTED[:3])
    assert "recent_ids" not in value["sessions"]
    assert value["profile"]["recent_ids"] == "".join(dedupe.digest(i) for i in DIGESTED[:3])
    again, out = profile_stage.apply_event(value, ev("e1", T0 + 500, "product_view"), 3, 0, "p-a")
    assert again["sessions"]["open"] == value["sessions"]["open"] and again["profile"]["events"] == 3
    assert again["sessions"]["offset"] == again["profile"]["offset"] == 3 and out.segment_changes == []


def test_sessions_alone_still_drop_a_retried_event_id_with_their_own_ids() -> None:
    state, _, _ = sessions.apply(None, ev("e1", T0), 0)
    retried, outcome, _ = sessions.apply(state, ev("e1", T0 + 5), 1)
    assert outcome == "duplicate_event_id" and retried["open"] == state["open"]
    assert state["recent_ids"] == dedupe.digest("e1")


def test_a_value_written_before_is_read_and_gives_up_the_sessions_copy_on_its_next_event() -> None:
    old = as_written_before(fold(DIGESTED[:5]), DIGESTED[:5])
    retried, _ = profile_stage.apply_event(old, ev("e4", T0 + 600, "product_view"), 5, 0, "p-a")
    assert retried["profile"]["events"] == 5 and retried["sessions"]["open"] == old["sessions"]["open"]
    new, _ = profile_stage.apply_event(old, ev("e5", T0 + 600, "product_view"), 5, 0, "p-a")
    assert new["profile"]["events"] == 6 and new["sessions"]["open"][0]["events"] == 6
    assert "recent_ids" not in new["sessions"]
    assert new["profile"]["recent_ids"] == "".join(dedupe.digest(i) for i in DIGESTED[:6])


def test_a_merge_with_a_value_written_before_keeps_the_ids_of_both_sides_once() -> None:
    survivor = fold(DIGESTED[:2])
    absorbed = as_written_before(fold(DIGESTED[10:13], first_offset=40, profile_id="p-b", partition=1),
                                 DIGESTED[10:13])
    _, handover = profile_identity.merge_out(absorbed, {"change_id": "c1", "into": "p-a"}, "p-b", 50, 1)
    assert handover is not None
    merged, _, outcome = profile_identity.merge_in(survivor, handover["merge_in"], 9, 0, "p-a", now=T0 + 900)
    assert outcome == "merged" and "recent_ids" not in merged["sessions"]
    interleaved = [*DIGESTED[10:12], DIGESTED[0], DIGESTED[12], DIGESTED[1]]  # by recency, the newest last
    assert list(dedupe.ids(merged["profile"]["recent_ids"])) == [dedupe.digest(i) for i in interleaved]
    again, _ = profile_stage.apply_event(merged, ev("e12", T0 + 999, "product_view"), 10, 0, "p-a")
    assert again["profile"]["events"] == merged["profile"]["events"] == 5
    assert again["sessions"]["open"] == merged["sessions"]["open"]


def test_a_value_keeps_one_packed_string_of_ids_in_its_json() -> None:
    value: dict[str, Any] = fold(DIGESTED)
    blob = orjson.dumps(value)
    assert orjson.loads(blob) == value and blob.count(b'"recent_ids"') == 1
    assert len(value["profile"]["recent_ids"]) == 64 * dedupe.WIDTH
