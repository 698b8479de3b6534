"""Publishers control every field value: arbitrary values in any field of any event type go
through every stage's fold without a processing error, and every output keeps its schema.

The stages run as their pure folds, in flow order, as the agents chain them: ingest
(app/ingest/fold.py), identity (app/identity/stream.py), profiles
(app/profiles/fold.py, with a tick that closes the session), clusters (app/clusters/state.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from app.clusters import state as cluster_stage
from app.events.validation import Rejection, Validator
from app.identity import IdentityResolver
from app.identity.stream import Resolved, StagedStore, observation_to_dict, resolve_record
from app.ingest import fold as activity_batch
from app.ingest.fold import Source
from app.profiles import merges as profile_identity
from app.profiles.fold import Record, StageMemory, fold

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = SCHEMAS / "examples"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z: every example is re-dated to it
STAMP = "2026-01-01T00:00:00Z"
SECRET = "unit-test-secret-0123456789"
PROFILE_EVENTS = "app-profile-events"


def schema(topic: str) -> Draft7Validator:
    doc = json.loads((SCHEMAS / f"{topic}.v1.json").read_text())
    return Draft7Validator(doc, format_checker=Draft7Validator.FORMAT_CHECKER)


OUTPUT_SCHEMAS = {name: schema(name) for name in ("segment-changes", "session-summaries", "identity-changes")}


def examples(topic: str) -> list[dict[str, Any]]:
    docs = [json.loads(p.read_text()) for p in sorted((EXAMPLES / topic).glob("*.json"))]
    for doc in docs:
        if "timestamp" in doc:
            doc["timestamp"] = STAMP
        if "updated_at" in doc:
            doc["updated_at"] = STAMP
    return docs


EVENTS = examples("clickstream")
CRM = examples("crm-profiles")


def leaf_paths(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value in ``doc`` (objects and arrays walked), the containers included."""
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from leaf_paths(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from leaf_paths(value, (*path, index))


def with_value(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


hostile_text = st.text(max_size=40) | st.sampled_from(
    ["Home & Garden", "Crème brûlée", "<script>alert(1)</script>", "O'Neill", "a) or (monetary > 0", "{key}",
     "__for_each_key__", "count(x, 1h)", "affinity.*", "\u202e", "\x00", "persona:segment:*", " ", "."]
)
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | hostile_text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(hostile_text, inner, max_size=3), max_leaves=6)


@st.composite
def mutated(draw: st.DrawFn, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """An example with one to three of its values replaced: mostly by text, sometimes by any JSON value."""
    doc = draw(st.sampled_from(docs))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in leaf_paths(doc) if p and p[0] not in ("schema_version", "type")]
        path = draw(st.sampled_from(paths))
        doc = with_value(doc, path, draw(hostile_text | json_values))
    return doc


def ids_of(doc: dict[str, Any], n: int) -> dict[str, Any]:
    """The same event again as a new event (a new id), ``n`` minutes later."""
    again = copy.deepcopy(doc)
    if isinstance(again.get("event_id"), str):
        again["event_id"] = f"{again['event_id']}-{n}"
    return again


def assert_valid(topic: str, doc: dict[str, Any]) -> None:
    errors = sorted(OUTPUT_SCHEMAS[topic].iter_errors(doc), key=str)
    assert not errors, f"{topic} output breaks its schema: {errors[0].message} in {doc}"


def no_processing_errors(rejections: list[Rejection]) -> None:
    errors = [r for r in rejections if r.code == "processing_error"]
    assert not errors, errors[0].message


def run_pipeline(clickstream: list[bytes], crm: list[bytes]) -> None:
    """Every stage's fold over the records, chained as the agents chain them."""
    validator, resolver = Validator(), IdentityResolver(SECRET)
    ingest = activity_batch.fold([Source(raw, 0, offset, NOW) for offset, raw in enumerate(clickstream)],
                                 {}, {}, validator, resolver, now=NOW + 60)
    no_processing_errors([refused.rejection for refused in ingest.rejected])

    identity_inputs = [
        orjson.dumps({"obs": observation_to_dict(obs), "anon": activity_batch.anonymous_hash(obs), "partition": 0})
        for obs, _ in ingest.forwards
    ]
    for raw in crm:
        forward = activity_batch.crm_forward(raw, NOW, validator, resolver)
        if isinstance(forward, Rejection):
            no_processing_errors([forward])
        else:
            identity_inputs.append(forward[1])
    staged = StagedStore({})
    profile_docs: list[dict[str, Any]] = []
    for offset, raw in enumerate(identity_inputs):
        done = resolve_record(resolver, staged, raw, f"0:{offset}")
        if isinstance(done, Rejection):
            no_processing_errors([done])
            continue
        assert isinstance(done, Resolved)
        for change in done.resolution.changes:
            assert_valid("identity-changes", change)
            profile_docs += [envelope for _, envelope in profile_identity.control_records(change)]
        parsed = done.parsed
        traits = getattr(parsed, "traits", None)
        if traits and done.resolution.profile_id:
            profile_docs.append({"profile_id": done.resolution.profile_id, "traits": traits, "ts": parsed.ts})

    values = [value for _, value in ingest.to_profiles] + [orjson.dumps(doc) for doc in profile_docs]
    values.append(orjson.dumps({"tick": NOW + 30 * 86400}))  # stream time moves on: sessions close, timers fire
    records = [Record(PROFILE_EVENTS, 0, offset, value) for offset, value in enumerate(values)]
    profiles = fold(records, {}, StageMemory(), wall=NOW + 120)
    no_processing_errors([rejection for _, rejection in profiles.rejected])
    model = cluster_stage.new_state(cluster_stage.ClusterConfig(k=2, warmup=1))
    for offset, (kind, _, doc) in enumerate(profiles.outputs):
        if kind == "cluster_input":
            parsed_input = cluster_stage.parse_input(orjson.dumps(doc))
            assert not isinstance(parsed_input, Rejection), parsed_input
            if "merged_into" in parsed_input:
                continue
            _, changes = cluster_stage.step(model, None, parsed_input, offset)
            for change in changes:
                assert_valid("segment-changes", change)
        else:
            assert_valid(kind.replace("_", "-"), doc)


@pytest.mark.parametrize("category", ["Home & Garden", "Crème brûlée", "<script>", "O'Neill", "a) or (b"])
def test_a_category_that_is_not_a_name_makes_its_interest_segment_and_nothing_else(category: str) -> None:
    view = next(doc for doc in EVENTS if doc["type"] == "product_view")
    views = [with_value(ids_of(view, n), ("properties", "category"), category) for n in range(3)]
    validator, resolver = Validator(), IdentityResolver(SECRET)
    ingest = activity_batch.fold([Source(orjson.dumps(doc), 0, i, NOW) for i, doc in enumerate(views)],
                                 {}, {}, validator, resolver, now=NOW + 60)
    records = [Record(PROFILE_EVENTS, 0, i, value) for i, (_, value) in enumerate(ingest.to_profiles)]
    profiles = fold(records, {}, StageMemory(), wall=NOW + 60)
    assert profiles.rejected == []
    entered = [doc["segment_id"] for kind, _, doc in profiles.outputs if kind == "segment_changes"]
    assert f"interest:{category}" in entered
    run_pipeline([orjson.dumps(doc) for doc in views], [])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(EVENTS), min_size=1, max_size=4))
def test_hostile_values_in_any_clickstream_field_are_processed_or_refused_and_outputs_keep_their_schemas(
    docs: list[dict[str, Any]],
) -> None:
    # Each hostile event comes three times (new ids), so its values reach affinities and segments.
    clickstream = [orjson.dumps(ids_of(doc, n)) for doc in docs for n in range(3)]
    run_pipeline(clickstream, [])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(CRM), min_size=1, max_size=3), mutated(EVENTS))
def test_hostile_values_in_any_crm_field_are_processed_or_refused_and_outputs_keep_their_schemas(
    records: list[dict[str, Any]], event: dict[str, Any],
) -> None:
    run_pipeline([orjson.dumps(event)], [orjson.dumps(record) for record in records])


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_on_the_input_topics_are_refused_or_processed_never_failed(raw: bytes) -> None:
    run_pipeline([raw], [raw])
