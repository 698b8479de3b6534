"""The serving keys of each table value, and the table a changelog implies (``persona rebuild-redis``)."""

from __future__ import annotations

import json

import orjson
import pytest
from click.testing import CliRunner

from app.cli import cli
from app.events.validation import Event
from app.identity.hashing import profile_id_for
from app.ingest import activity
from app.profiles import state as profile_stage
from app.runtime.rebuild import last_values, serving_keys
from app.serving import keys as serving

T0 = 1_700_000_000.0
IDENTITY_PROFILE = {
    "profile_id": "p-1",
    "identifiers": {"ha": "anonymous_id", "he": "email"},
    "members": ["ha", "he"],
    "evidence": {"ha|he": {"rule": "same_record"}},
}


def activity_value() -> dict[str, object]:
    state, _ = activity.apply(None, "page_view", "e1", T0, 0)
    state, _ = activity.apply(state, "product_view", "e2", T0 + 5, 1)
    return state


def profile_value() -> dict[str, object]:
    doc = {"event_id": "e1", "type": "page_view", "anonymous_id": "a1"}
    value, _ = profile_stage.apply_event(None, Event(doc, "page_view", "e1", "a1", T0), 0, 0, "p-1")
    return value


def test_activity_entry_is_the_summary_with_the_current_profile() -> None:
    [(key, fields)] = serving.activity_entries("h1", activity_value(), "p-9")
    assert key == "persona:activity:h1"
    assert fields["events"] == 2 and fields["first_seen"] == T0 and fields["last_seen"] == T0 + 5
    assert json.loads(str(fields["counts"])) == {"page_view": 1, "product_view": 1}
    assert fields["profile_id"] == "p-9"
    assert "offset" not in fields and "recent_ids" not in fields  # no stream internals served


def test_identity_profile_gives_its_summary_and_one_lookup_key_per_identifier() -> None:
    entries = dict(serving.identity_entries("p/p-1", IDENTITY_PROFILE))
    assert set(entries) == {"persona:profile:p-1:identity", "persona:identity:ha", "persona:identity:he"}
    summary = {k: json.loads(str(v)) for k, v in entries["persona:profile:p-1:identity"].items()}
    assert summary == {"profile_id": "p-1", "identifiers": {"anonymous_id": ["ha"], "email": ["he"]},
                       "evidence": {"same_record": 1}, "members": 2}
    assert entries["persona:identity:he"] == {"profile_id": "p-1"}


@pytest.mark.parametrize("key", ["i/ha", "m/ha", "b/x", "a/ha", "__watermark__/0"])
def test_other_identity_entries_are_not_served(key: str) -> None:
    assert serving.identity_entries(key, {"profile_id": "p-1", "partition": 0}) == []


def test_merged_and_alias_entries() -> None:
    assert serving.merged_entries("p-2", "p-1") == [("persona:profile:p-2:identity", {"merged_into": "p-1"})]
    assert serving.alias_entries("ha", {"profile_id": "p-1", "offset": 4}) == [
        ("persona:identity:ha", {"profile_id": "p-1"})
    ]


def test_profile_entry_serves_features_session_and_segments_flattened() -> None:
    value = profile_value()
    [(key, fields)] = serving.profile_entries("p-1", value, T0 + 60)
    assert key == "persona:profile:p-1"
    assert fields["events"] == 1 and fields["last_seen"] == T0
    assert isinstance(json.loads(str(fields["features"])), dict)
    assert isinstance(json.loads(str(fields["segments"])), list)
    assert json.loads(str(fields["session"])) is not None
    assert serving.profile_now(value, default=0.0) == T0
    assert serving.profile_now({}, default=5.0) == 5.0


def test_family_of_each_key_and_unknown_keys_refused() -> None:
    assert serving.family("persona:profile:p-1:identity") == "profile_identity"
    assert serving.family("persona:profile:p-1") == "profile"
    with pytest.raises(ValueError):
        serving.family("other:key")


def test_changelog_keeps_last_value_deletes_tombstones_and_skips_watermarks() -> None:
    records = [
        (b'"a"', b'{"n": 1}'), (b'"b"', b'{"n": 1}'), (b'"a"', b'{"n": 2}'),
        (b'"b"', None), (b'"__watermark__/0"', b"12"), (None, b"{}"),
        (b'"b"', b'{"n": 3}'), (b'"c"', b'1'), (b'"c"', None),
    ]
    assert last_values(iter(records)) == {"a": {"n": 2}, "b": {"n": 3}}


def test_serving_keys_from_tables_stamp_activity_with_alias_or_own_profile() -> None:
    tables = {
        "identity": {"p/p-1": IDENTITY_PROFILE, "i/he": {"profile_id": "p-1"}},
        "identity_alias": {"ha": {"profile_id": "p-1", "offset": 0}},
        "activity": {"ha": activity_value(), "hz": activity_value()},
        "profiles": {"p-1": profile_value()},
    }
    keys = serving_keys(tables, now=T0 + 3600)
    assert keys["persona:activity:ha"]["profile_id"] == "p-1"
    assert keys["persona:activity:hz"]["profile_id"] == profile_id_for("hz")  # never resolved: its own profile
    assert keys["persona:identity:ha"] == keys["persona:identity:he"] == {"profile_id": "p-1"}
    # The profile is served at its own stream time (its last event), as the agent wrote it then.
    [(_, at_last_event)] = serving.profile_entries("p-1", profile_value(), T0)
    assert keys["persona:profile:p-1"] == at_last_event
    families = sorted(serving.family(k) for k in keys)
    assert families == ["activity", "activity", "identity", "identity", "profile", "profile_identity"]


def test_rebuild_with_redis_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(cli, ["rebuild-redis"])
    assert result.exit_code == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_rebuild_redis_has_help() -> None:
    result = CliRunner().invoke(cli, ["rebuild-redis", "--help"])
    assert result.exit_code == 0 and "changelog" in result.output


def test_orjson_flatten_matches_agents_wire_format() -> None:
    # The identity summary's fields are JSON text, exactly as the agent wrote them before.
    fields = dict(serving.profile_identity_entries(IDENTITY_PROFILE))["persona:profile:p-1:identity"]
    assert fields["members"] == orjson.dumps(2).decode()


def test_rebuild_restores_cluster_memberships_the_cluster_catalogue_and_every_segment_set() -> None:
    from app.clusters import state as cluster_stage
    from app.runtime.rebuild import segment_sets

    state = cluster_stage.new_state(cluster_stage.ClusterConfig(k=2, warmup=4))
    clusters: dict[str, object] = {}
    for offset in range(8):
        doc = {"profile_id": f"p-{offset}", "input_id": f"s-{offset}", "at": T0 + offset,
               "vector": {"orders_decayed": float(offset % 2) * 5}}
        entry, _ = cluster_stage.step(state, None, doc, offset)
        if entry is not None:
            clusters[doc["profile_id"]] = entry
    clusters[cluster_stage.MODEL_KEY] = cluster_stage.checkpoint(state)
    value, _ = profile_stage.apply_event(None, Event({}, "page_view", "e1", "a1", T0), 0, 0, "p-4")
    tables = {"clusters": clusters, "profiles": {"p-4": value}}

    keys = serving_keys(tables, T0)
    assert {k for k in keys if serving.family(k) == "profile_cluster"} == {
        f"persona:profile:p-{i}:cluster" for i in range(3, 8)}  # seeded at the 4th
    catalogue = keys["persona:clusters"]
    assert {json.loads(str(v))["label"] for v in catalogue.values()} == set(state.model.labels().values())
    sets = segment_sets(tables)
    assert sets["persona:segment:new_visitor"] == {"p-4"}
    members = [pid for key, pids in sets.items() if key.startswith("persona:segment:cluster-") for pid in pids]
    assert sorted(members) == [f"p-{i}" for i in range(3, 8)]
