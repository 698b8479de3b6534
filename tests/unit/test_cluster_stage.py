"""The clusters stage's pure core: exact under replay and restart, duplicates dropped, exits with reasons."""

from __future__ import annotations

import random
from typing import Any

import pytest

from app.clusters import state as cluster_stage
from app.clusters.state import ClusterConfig, checkpoint, restore, step
from app.events.validation import Rejection
from app.profiles.features import vector_names
from app.serving import keys as serving
from tables.hooks import REGISTRY, apply_change
from tests.unit.test_schemas import validator

CONFIG = ClusterConfig(k=3, warmup=30, seed=1, reseed_every=50)  # re-seeds several times per test
# Three behaviours in a few of the real profile features (the rest stay 0).
BLOBS = {
    "buyer": {"orders_decayed": 4.0, "revenue_decayed_log": 6.0, "activity_decayed_log": 3.0},
    "browser": {"orders_decayed": 0.0, "revenue_decayed_log": 0.0, "activity_decayed_log": 4.5},
    "lapsed": {"orders_decayed": 0.5, "revenue_decayed_log": 1.0, "activity_decayed_log": 0.5},
}


def inputs(n: int, seed: int = 0, profiles: int = 40) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    names = sorted(BLOBS)
    out = []
    for i in range(n):
        p = rng.randrange(profiles)
        blob = BLOBS[names[p % 3]]
        vector = {f: rng.gauss(v, 0.2) for f, v in blob.items()}
        out.append({"profile_id": f"p-{p}", "input_id": f"ses-{i}", "at": 1000.0 + 60 * i, "vector": vector})
    return out


def run(state: cluster_stage.ClusterState, table: dict[str, Any], docs: list[dict[str, Any]], start: int = 0
        ) -> list[dict[str, Any]]:
    """Feed ``docs`` at offsets ``start``.. as the agent does; return the changes emitted."""
    emitted = []
    for offset, doc in enumerate(docs[start:], start):
        entry, changes = step(state, table.get(doc["profile_id"]), doc, offset)
        if entry is not None:
            table[doc["profile_id"]] = entry
        emitted += changes
    return emitted


def test_profiles_of_one_behaviour_share_a_cluster_and_changes_are_schema_valid() -> None:
    state, table = cluster_stage.new_state(CONFIG), {}
    changes = run(state, table, inputs(300))
    for change in changes:
        validator("segment-changes").validate(change)
        assert change["segment_kind"] == "cluster"
    entered = [c for c in changes if c["change"] == "entered"]
    assert entered and all({"cluster", "label", "distance", "nearest_cluster"} <= set(c["reason"]) for c in entered)
    by_blob: dict[str, set[int]] = {}
    for pid, entry in table.items():
        by_blob.setdefault(sorted(BLOBS)[int(pid[2:]) % 3], set()).add(entry["cluster"])
    assert all(len(ids) == 1 for ids in by_blob.values()) and len(set.union(*by_blob.values())) == 3


def test_restart_from_a_checkpoint_and_replay_ends_with_the_same_model_and_emits_nothing_twice() -> None:
    docs = inputs(400)
    straight, straight_table = cluster_stage.new_state(CONFIG), {}
    straight_changes = run(straight, straight_table, docs)

    crashed, table = cluster_stage.new_state(CONFIG), {}
    first = run(crashed, table, docs[:200])
    saved = checkpoint(crashed)  # written with the watermark after offset 199
    first += run(crashed, table, docs[:250], start=200)
    # The worker died after offset 249: memberships up to 249 are in the table, the model is not.
    restored = restore(saved, CONFIG)
    assert restored.offset == 199
    replayed = run(restored, table, docs, start=200)
    assert restored.model.centres() == straight.model.centres()
    assert restored.model.ids == straight.model.ids and restored.model.seen == straight.model.seen
    assert restored.model.to_json()["reservoir"] == straight.model.to_json()["reservoir"]
    assert table == straight_table
    assert [c["change_id"] for c in first + replayed] == [c["change_id"] for c in straight_changes]


def test_a_session_sent_twice_is_learned_and_assigned_once_but_its_first_offset_replays() -> None:
    docs = inputs(60)
    state, table = cluster_stage.new_state(CONFIG), {}
    run(state, table, docs)
    seen, centres = state.model.seen, state.model.centres()
    again = docs[-1]  # the profiles stage re-sent the last closed session at a new offset
    entry, changes = step(state, table[again["profile_id"]], again, 60)
    assert (entry, changes) == (None, []) and state.model.seen == seen and state.model.centres() == centres
    # A restart that replays offset 59 (the first time it was seen) learns it again.
    replay = restore(checkpoint(cluster_stage.new_state(CONFIG)), CONFIG)
    run(replay, {}, docs[:59])
    step(replay, table[again["profile_id"]], again, 59)
    assert replay.model.seen == seen


def test_moving_to_another_cluster_exits_the_old_one_with_its_reason_and_enters_the_new_one() -> None:
    state, table = cluster_stage.new_state(CONFIG), {}
    run(state, table, inputs(200))
    pid = "p-0"  # a "browser"
    old = table[pid]["cluster"]
    buyer = {"profile_id": pid, "input_id": "ses-new", "at": 99999.0, "vector": dict(BLOBS["buyer"])}
    entry, changes = step(state, table[pid], buyer, 200)
    assert entry is not None and entry["cluster"] != old
    assert [(c["change"], c["segment_id"]) for c in changes] == [
        ("exited", f"cluster-{old}"), ("entered", f"cluster-{entry['cluster']}")]
    assert changes[0]["reason"] == {"cluster": old, "no_longer_nearest": True}
    assert changes[1]["reason"]["distance"] >= 0


def test_no_cluster_segment_before_the_warm_up_ends() -> None:
    state, table = cluster_stage.new_state(ClusterConfig(k=3, warmup=100)), {}
    assert run(state, table, inputs(50)) == []
    assert not state.model.ready and all(entry["cluster"] is None for entry in table.values())


def test_a_checkpoint_wins_over_a_changed_configuration() -> None:
    state = cluster_stage.new_state(CONFIG)
    run(state, {}, inputs(100))
    restored = restore(checkpoint(state), ClusterConfig(k=5, warmup=10))
    assert restored.model.k == 3 and restored.model.centres() == state.model.centres()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", "invalid_json"),
        (b'"text"', "not_an_object"),
        (b'{"input_id": "s", "at": 1, "vector": {}}', "schema_violation"),
        (b'{"profile_id": "p", "input_id": "s", "at": true, "vector": {}}', "schema_violation"),
        (b'{"profile_id": "p", "input_id": "s", "at": 1, "vector": {"aov": NaN}}', "invalid_json"),
        (b'{"profile_id": "p", "input_id": "s", "at": 1, "vector": {"aov": null}}', "schema_violation"),
    ],
)
def test_bad_cluster_input_is_rejected_with_a_reason(raw: bytes, code: str) -> None:
    result = cluster_stage.parse_input(raw)
    assert isinstance(result, Rejection) and result.code == code


def test_cluster_input_is_the_profile_vector_at_its_last_event() -> None:
    from app.profiles import unified as profile

    value = {"profile": {**profile.new_state(), "events": 4, "first_seen": 0.0, "last_seen": 86400.0}}
    doc = cluster_stage.cluster_input("p-1", value, "ses-a")
    assert list(doc["vector"]) == list(vector_names()) and doc["at"] == 86400.0
    assert set(cluster_stage.CLUSTER_FEATURES) < set(doc["vector"])
    assert doc["vector"]["recency_days"] == 0.0
    assert cluster_stage.parse_input(__import__("orjson").dumps(doc)) == doc


def test_merge_keeps_the_survivors_cluster_and_both_sides_inputs() -> None:
    state, table = cluster_stage.new_state(CONFIG), {}
    run(state, table, inputs(200))
    survivor, absorbed = table["p-0"], table["p-1"]
    merged = {"change": "merged", "profile_id": "p-0", "absorbed_profile_ids": ["p-1"]}
    apply_change(table, REGISTRY["clusters"], merged)
    assert "p-1" not in table and table["p-0"]["cluster"] == survivor["cluster"]
    assert set(absorbed["inputs"]) <= set(table["p-0"]["inputs"]) or len(table["p-0"]["inputs"]) == 16
    assert REGISTRY["clusters"].erase(table["p-0"]) is None


def test_serving_keys_of_a_membership_and_of_the_model() -> None:
    state, table = cluster_stage.new_state(CONFIG), {}
    run(state, table, inputs(100))
    entry = table["p-0"]
    [(key, fields)] = serving.cluster_entries("p-0", entry)
    assert key == "persona:profile:p-0:cluster" and fields["segment_id"] == f"cluster-{entry['cluster']}"
    assert serving.segment_memberships("clusters", "p-0", entry) == [f"persona:segment:cluster-{entry['cluster']}"]
    catalogue_key, catalogue = serving.clusters_entry(cluster_stage.catalogue(state))
    assert catalogue_key == "persona:clusters" and len(catalogue) == 3
    described = cluster_stage.describe(state)
    assert described["k"] == 3 and described["offset"] == 99
    assert len(described["centres"]["0"]) == len(cluster_stage.CLUSTER_FEATURES)
