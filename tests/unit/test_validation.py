"""Validation of input records: every input gets a verdict, never an exception."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from app.events.validation import Event, Limits, Rejection, Validator

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC).timestamp()
VALIDATOR = Validator(Limits(max_record_bytes=4096))
REASON_CODES = set(
    json.loads((Path(__file__).parents[2] / "schemas" / "dead-letters.v1.json").read_text())["properties"]["reason"][
        "properties"
    ]["code"]["enum"]
)


def doc(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "schema_version": 1,
        "event_id": "e1",
        "type": "page_view",
        "timestamp": "2026-11-24T07:59:00Z",
        "anonymous_id": "a1",
    }
    base.update(overrides)
    return base


def verdict(document: object) -> Event | Rejection:
    return VALIDATOR.clickstream(orjson.dumps(document), now=NOW)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_get_a_verdict_with_a_contract_reason_code(raw: bytes) -> None:
    result = VALIDATOR.clickstream(raw, now=NOW)
    assert isinstance(result, Event | Rejection)
    if isinstance(result, Rejection):
        assert result.code in REASON_CODES and result.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.sampled_from(sorted(VALIDATOR.event_types)), st.dictionaries(st.text(max_size=12), json_values, max_size=5))
def test_arbitrary_properties_never_raise(event_type: str, properties: dict[str, object]) -> None:
    result = verdict(doc(type=event_type, properties=properties))
    assert isinstance(result, Event | Rejection)


def test_valid_event_exposes_the_fields_every_stage_needs() -> None:
    result = verdict(doc(type="product_view", properties={"product_id": "p1", "category": "shoes", "price": 10}))
    assert isinstance(result, Event)
    assert (result.type, result.event_id, result.anonymous_id) == ("product_view", "e1", "a1")
    assert result.ts == NOW - 60


def test_each_failure_has_its_own_reason_code() -> None:
    assert VALIDATOR.clickstream(b"{", now=NOW).code == "invalid_json"
    assert VALIDATOR.clickstream(b"\xff\xfe", now=NOW).code == "invalid_encoding"
    assert VALIDATOR.clickstream(b"[1, 2]", now=NOW).code == "not_an_object"
    assert VALIDATOR.clickstream(b"x" * 5000, now=NOW).code == "record_too_large"
    assert verdict(doc(schema_version=2)).code == "unsupported_schema_version"
    assert verdict(doc(type="teleport")).code == "unknown_type"
    assert verdict(doc(type="purchase")).code == "schema_violation"
    assert verdict(doc(timestamp="1999-12-31T23:59:59Z")).code == "timestamp_out_of_range"
    assert verdict(doc(timestamp="2026-11-24T09:00:00Z")).code == "timestamp_out_of_range"
    assert verdict(doc(timestamp="2026-11-24T07:59:00")).code == "schema_violation"  # no offset


def test_schema_violation_names_the_offending_field() -> None:
    result = verdict(doc(type="purchase", properties={"order_id": "o1", "items": [], "revenue": 1, "currency": "EUR"}))
    assert isinstance(result, Rejection)
    assert result.path == "properties.items"
    assert "at least 1" in result.message


def test_unknown_top_level_field_is_rejected_to_catch_publisher_typos() -> None:
    result = verdict(doc(timestmap="2026-11-24T07:59:00Z"))
    assert isinstance(result, Rejection) and result.code == "schema_violation"


def test_crm_record_validation() -> None:
    good = {"schema_version": 1, "record_id": "r1", "source": "pos", "traits": {"last_name": "Lee"}}
    assert VALIDATOR.crm_record(orjson.dumps(good)).record_id == "r1"  # type: ignore[union-attr]
    assert VALIDATOR.crm_record(orjson.dumps({**good, "traits": {}})).code == "schema_violation"  # type: ignore[union-attr]
    assert VALIDATOR.crm_record(orjson.dumps({**good, "schema_version": 3})).code == "unsupported_schema_version"  # type: ignore[union-attr]


# --- batch records --------------------------------------------------------------------------

def batch(events: list[object], **overrides: object) -> bytes:
    return orjson.dumps({"schema_version": 1, "batch_id": "b1", "events": events, **overrides})


def summary(result: Event | Rejection) -> tuple[str, str]:
    return ("event", result.event_id) if isinstance(result, Event) else ("rejected", result.code)


event_docs = st.sampled_from([
    doc(event_id="e1"),
    doc(event_id="e2", type="product_view", properties={"product_id": "p1"}),
    doc(event_id="e3", type="teleport"),  # unknown type
    doc(event_id="e4", timestamp="1970-01-01T00:00:00Z"),  # out of range
    {"schema_version": 1, "event_id": "e5"},  # schema violation
    doc(event_id="e6", schema_version=2),
    [1, 2],  # not an object
])


@given(st.lists(event_docs, min_size=1, max_size=12))
def test_each_event_of_a_batch_gets_the_verdict_it_gets_alone(events: list[object]) -> None:
    items = VALIDATOR.clickstream_items(batch(events), now=NOW)
    assert [item.batch_index for item in items] == list(range(len(events)))
    assert [summary(item.result) for item in items] == [summary(verdict(e)) for e in events]
    assert [item.doc for item in items] == events


def test_an_event_of_another_visitor_in_a_batch_is_refused_alone() -> None:
    items = VALIDATOR.clickstream_items(batch([doc(event_id="e1"), doc(event_id="e2", anonymous_id="a2"),
                                               doc(event_id="e3")]), now=NOW)
    assert [summary(item.result) for item in items] == [
        ("event", "e1"), ("rejected", "batch_mixed_anonymous_ids"), ("event", "e3")]
    assert isinstance(items[1].result, Rejection) and items[1].result.path == "anonymous_id"


def test_a_record_that_is_not_a_valid_batch_is_refused_whole() -> None:
    for raw in (batch([]), batch([doc()], extra=1), batch([doc()], schema_version=2),
                orjson.dumps({"schema_version": 1, "events": [doc()]}), batch([doc()] * 1001)):
        items = VALIDATOR.clickstream_items(raw, now=NOW) if len(raw) < 4096 else \
            Validator().clickstream_items(raw, now=NOW)
        assert [(item.batch_index, type(item.result)) for item in items] == [(None, Rejection)], raw[:80]


def test_a_record_of_one_event_gets_one_verdict_without_an_index() -> None:
    (item,) = VALIDATOR.clickstream_items(orjson.dumps(doc()), now=NOW)
    assert item.batch_index is None and summary(item.result) == ("event", "e1")


def test_an_event_nested_deeper_than_a_stage_can_write_is_refused_at_the_edge() -> None:
    # Found by the worker fuzz: 255 levels under a context field passed validation, and ingest
    # then failed to write the event for the profiles stage (orjson writes at most 254 levels).
    deep = b'{"schema_version": 1, "event_id": "e1", "type": "page_view", "timestamp": "2026-11-24T07:59:00Z", ' \
        b'"anonymous_id": "a1", "context": {"x": ' + b"[" * 255 + b"]" * 255 + b"}}"
    refused = Validator(Limits(max_record_bytes=65536)).clickstream(deep, now=NOW)
    assert isinstance(refused, Rejection) and refused.code == "schema_violation"
    assert "nested deeper than 64 levels" in refused.message
    # Brackets inside strings are text, not nesting.
    assert isinstance(verdict(doc(context={"page": {"title": "[" * 300}})), Event)
