"""Memberships: changes only on a real change; identity merges, splits and erasure give the right enters and exits."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft7Validator

from app.segments import membership, state
from app.segments.evaluate import Decision
from tables.hooks import REGISTRY

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "segment-changes.v1.json").read_text())
VALIDATOR = Draft7Validator(SCHEMA, format_checker=Draft7Validator.FORMAT_CHECKER)


def members(**since: float) -> dict:
    return {"segments": {s: {"kind": "rule", "since": t, "reason": {"rule": s}} for s, t in since.items()}}


def decided(*segments: str) -> dict[str, Decision]:
    return {s: Decision(s, "rule", {"rule": s, "features": {}}) for s in segments}


def changes_of(out):
    return [(c["profile_id"], c["change"], c["segment_id"]) for c in out]


def valid(out):
    for c in out:
        assert list(VALIDATOR.iter_errors(c)) == []
    return out


def test_diff_emits_only_real_changes_and_keeps_the_entry_time():
    s, out = membership.diff("p-1", None, decided("a", "b"), 100.0, "x:1")
    assert changes_of(valid(out)) == [("p-1", "entered", "a"), ("p-1", "entered", "b")]
    s2, out = membership.diff("p-1", s, decided("a", "b"), 200.0, "x:2")
    assert out == [] and s2["segments"]["a"]["since"] == 100.0
    s3, out = membership.diff("p-1", s2, decided("b", "c"), 300.0, "x:3")
    assert changes_of(valid(out)) == [("p-1", "exited", "a"), ("p-1", "entered", "c")]
    assert out[0]["reason"] == {"rule": "a", "no_longer_matched": True}
    assert {k: v["since"] for k, v in s3["segments"].items()} == {"b": 100.0, "c": 300.0}


def test_a_rule_diff_leaves_cluster_memberships_alone():
    cluster = Decision("cluster-2", "cluster", {"cluster": 2, "distance": 0.4})
    s, _ = membership.diff("p-1", None, {"cluster-2": cluster}, 1.0, "c", kinds=("cluster",))
    s, out = membership.diff("p-1", s, decided("a"), 2.0, "r", kinds=("rule",))
    assert changes_of(out) == [("p-1", "entered", "a")]
    assert set(s["segments"]) == {"cluster-2", "a"}
    s, out = membership.diff("p-1", s, {}, 3.0, "c2", kinds=("cluster",))
    assert changes_of(valid(out)) == [("p-1", "exited", "cluster-2")]
    assert out[0]["segment_kind"] == "cluster"


def test_a_merge_exits_the_absorbed_profile_and_moves_the_survivor_to_the_reevaluated_set():
    surviving, absorbed = members(a=10.0, b=20.0), members(b=5.0, c=7.0)
    union = membership.union(surviving, [absorbed])
    assert {k: v["since"] for k, v in union["segments"].items()} == {"a": 10.0, "b": 5.0, "c": 7.0}
    new, out = membership.merge_changes("p-1", surviving, {"p-2": absorbed}, decided("b", "c", "d"), 50.0, "m:1")
    assert changes_of(valid(out)) == [
        ("p-2", "exited", "b"), ("p-2", "exited", "c"),
        ("p-1", "exited", "a"), ("p-1", "entered", "c"), ("p-1", "entered", "d"),
    ]
    assert out[0]["reason"] == {"merged_into": "p-1"}
    # Entry times carry over from either side (so minimum dwell is not restarted by a merge).
    assert {k: v["since"] for k, v in new["segments"].items()} == {"b": 5.0, "c": 7.0, "d": 50.0}


def test_a_split_exits_the_old_profile_when_it_is_gone_and_enters_each_part():
    old = members(a=1.0, b=2.0)
    states, out = membership.split_changes("p-1", old, {"p-7": decided("a"), "p-8": decided("b", "c")}, 9.0, "s")
    assert changes_of(valid(out)) == [
        ("p-1", "exited", "a"), ("p-1", "exited", "b"),
        ("p-7", "entered", "a"), ("p-8", "entered", "b"), ("p-8", "entered", "c"),
    ]
    assert out[0]["reason"] == {"split_into": ["p-7", "p-8"]}
    assert set(states) == {"p-7", "p-8"}


def test_a_split_that_keeps_the_old_id_diffs_it_like_an_update():
    old = members(a=1.0, b=2.0)
    states, out = membership.split_changes("p-1", old, {"p-1": decided("a"), "p-9": decided("b")}, 9.0, "s")
    assert changes_of(out) == [("p-1", "exited", "b"), ("p-9", "entered", "b")]
    assert states["p-1"]["segments"]["a"]["since"] == 1.0


def test_erasure_exits_every_segment_and_the_hook_deletes_the_state():
    out = membership.erase_changes("p-1", members(a=1.0, b=2.0), 9.0, "e")
    assert changes_of(valid(out)) == [("p-1", "exited", "a"), ("p-1", "exited", "b")]
    assert all(c["reason"] == {"erased": True} for c in out)
    assert membership.MembershipHooks().erase(members(a=1.0)) is None


def test_change_ids_are_stable_for_the_same_basis_and_differ_otherwise():
    _, one = membership.diff("p-1", None, decided("a"), 1.0, "clickstream:0:5")
    _, same = membership.diff("p-1", None, decided("a"), 1.0, "clickstream:0:5")
    _, other = membership.diff("p-1", None, decided("a"), 1.0, "clickstream:0:6")
    assert one[0]["change_id"] == same[0]["change_id"] != other[0]["change_id"]


def test_the_segments_table_hook_is_registered_and_merges_windows_and_memberships():
    hook = REGISTRY["segments"]
    a, _ = state.apply_event(None, "search", 100.0, 1)
    b, _ = state.apply_event(None, "search", 200.0, 1)
    a = {**a, "members": members(x=1.0)}
    b = {**b, "members": members(y=2.0)}
    m = hook.merge(a, b)
    assert set(m["members"]["segments"]) == {"x", "y"}
    assert m["windows"]["tiers"]["3600"]["search"] == {"0": 2}
    assert hook.erase(m) is None
    replay, outcome = state.apply_event(m, "search", 300.0, 1)
    assert outcome == "replayed" and replay is m
