"""End to end through the real broker and Redis: validation, dead letters, duplicates, HTTP."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
import pytest

from tests.integration.conftest import Pipeline, post, wait_for
from tests.integration.events import event, iso, product_view, record

pytestmark = pytest.mark.integration

DEAD_LETTER_SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "dead-letters.v1.json").read_text())


def test_malformed_records_go_to_dead_letters_with_reason_and_neighbours_are_processed(pipeline: Pipeline) -> None:
    good_before = product_view("g1", "anon-a")
    good_after = event("g2", "anon-a")
    bad = [
        (b"anon-a", b'{"schema_version": 1, "event_id": "x1", "type": '),  # bad JSON
        (b"anon-a", orjson_dumps({**event("x2", "anon-a"), "anonymous_id": 42})),  # wrong type
        (b"anon-a", orjson_dumps({k: v for k, v in event("x3", "anon-a").items() if k != "event_id"})),
        (b"anon-a", orjson_dumps(event("x4", "anon-a", "teleport"))),  # unknown type
        (b"anon-a", b"\xff\xfe not utf-8"),
        (b"anon-a", orjson_dumps({**event("x5", "anon-a"), "timestamp": "1970-01-01T00:00:00Z"})),
    ]
    expected_reasons = [
        "invalid_json",
        "schema_violation",
        "schema_violation",
        "unknown_type",
        "invalid_encoding",
        "timestamp_out_of_range",
    ]
    pipeline.produce(pipeline.topics.clickstream, [record(good_before), *bad, record(good_after)])
    _, port = pipeline.start_worker()

    letters = pipeline.consume(pipeline.topics.dead_letters, expected=len(bad))
    assert [letter["reason"]["code"] for letter in letters] == expected_reasons
    for letter, (_, raw) in zip(letters, bad, strict=True):
        jsonschema.validate(letter, DEAD_LETTER_SCHEMA)
        assert base64.b64decode(letter["payload"]["base64"]) == raw
        assert letter["source"]["topic"] == pipeline.topics.clickstream
        assert letter["reason"]["message"]
    assert [letter["source"]["offset"] for letter in letters] == [1, 2, 3, 4, 5, 6]
    assert letters[1]["reason"]["path"] == "anonymous_id"
    assert letters[2]["reason"]["message"] == "record must contain ['event_id'] properties"

    wait_for(
        lambda: pipeline.activity("anon-a").get("events") == "2",
        30,
        lambda: f"neighbours not processed: {pipeline.activity('anon-a')}",
    )
    counts = json.loads(pipeline.activity("anon-a")["counts"])
    assert counts == {"product_view": 1, "page_view": 1}
    assert pipeline.metric(port, "persona_dead_letters_total") == len(bad)
    # /metrics?name[]= answers the samples asked for, and only those (the bench polls it ten times a second).
    assert {s.name for s in pipeline.samples(port, "persona_dead_letters_total")} == {"persona_dead_letters_total"}
    assert len({s.name for s in pipeline.samples(port)}) > 20


@pytest.mark.on_both_brokers
def test_publisher_retry_with_same_event_id_is_processed_once(pipeline: Pipeline) -> None:
    original = record(event("same-id", "anon-b"))
    pipeline.produce(pipeline.topics.clickstream, [original, original, record(event("other", "anon-b")), original])
    _, port = pipeline.start_worker()
    wait_for(
        lambda: pipeline.metric(port, "persona_duplicates_total", kind="event_id") == 2,
        30,
        lambda: "duplicates not counted",
    )
    wait_for(
        lambda: pipeline.activity("anon-b").get("events") == "2",
        10,
        lambda: f"wrong count: {pipeline.activity('anon-b')}",
    )


def test_only_new_identity_information_is_forwarded_to_the_identity_stage(pipeline: Pipeline) -> None:
    # Two deliveries, so what was forwarded must survive in the table, not only within a batch.
    pipeline.produce(pipeline.topics.clickstream, [record(event(f"a{i}", "anon-f")) for i in range(5)])
    _, port = pipeline.start_worker()
    wait_for(lambda: pipeline.activity("anon-f").get("events") == "5", 30, lambda: "first events not applied")
    pipeline.produce(pipeline.topics.clickstream, [record(event(f"b{i}", "anon-f")) for i in range(5)])
    wait_for(lambda: pipeline.activity("anon-f").get("events") == "10", 30, lambda: "second events not applied")
    assert pipeline.metric(port, "persona_identity_forwarded_total", topic=pipeline.topics.clickstream) == 1


def test_a_batch_record_s_events_are_each_applied_and_its_bad_event_dead_lettered_alone(pipeline: Pipeline) -> None:
    events = [event("b1", "anon-e"), product_view("b2", "anon-e"), event("b3", "anon-other"),
              event("b1", "anon-e"), event("b4", "anon-e", "teleport"), event("b5", "anon-e")]
    batch = {"schema_version": 1, "batch_id": "flush-1", "events": events}
    not_a_batch = {"schema_version": 1, "batch_id": "flush-2", "events": []}
    single = record(event("single", "anon-e"))
    records = [(b"anon-e", orjson_dumps(batch)), (b"anon-e", orjson_dumps(not_a_batch)), single]
    pipeline.produce(pipeline.topics.clickstream, records)
    _, port = pipeline.start_worker()

    letters = pipeline.consume(pipeline.topics.dead_letters, expected=3)
    by_id = {letter["dead_letter_id"]: letter for letter in letters}
    for letter in letters:
        jsonschema.validate(letter, DEAD_LETTER_SCHEMA)
    mixed, unknown = by_id[f"{pipeline.topics.clickstream}:0:0:2"], by_id[f"{pipeline.topics.clickstream}:0:0:4"]
    assert (mixed["reason"]["code"], mixed["source"]["index"]) == ("batch_mixed_anonymous_ids", 2)
    assert json.loads(base64.b64decode(mixed["payload"]["base64"])) == events[2]  # the event alone
    assert (unknown["reason"]["code"], unknown["source"]["index"]) == ("unknown_type", 4)
    whole = by_id[f"{pipeline.topics.clickstream}:0:1"]  # an empty batch is refused whole
    assert whole["reason"]["code"] == "schema_violation" and "index" not in whole["source"]

    # b1, b2, b5 and the single event after the batch; the repeated b1 is a duplicate.
    wait_for(lambda: pipeline.activity("anon-e").get("events") == "4", 30,
             lambda: f"batch not applied: {pipeline.activity('anon-e')}")
    assert json.loads(pipeline.activity("anon-e")["counts"]) == {"page_view": 3, "product_view": 1}
    assert pipeline.metric(port, "persona_duplicates_total", kind="event_id") == 1
    wait_for(lambda: pipeline.metric(port, "persona_end_to_end_seconds_count") == 4, 30,
             lambda: "the profiles stage did not apply the batch's events")


def test_crm_records_are_validated_and_bad_ones_dead_lettered(pipeline: Pipeline) -> None:
    good = {
        "schema_version": 1,
        "record_id": "r1",
        "source": "crm",
        "traits": {"first_name": "Ann", "last_name": "Lee"},
    }
    missing_traits = {"schema_version": 1, "record_id": "r2", "source": "pos"}
    pipeline.produce(pipeline.topics.crm_profiles, [(b"r1", orjson_dumps(good)), (b"r2", orjson_dumps(missing_traits))])
    _, port = pipeline.start_worker()
    letters = pipeline.consume(pipeline.topics.dead_letters, expected=1)
    assert letters[0]["source"]["topic"] == pipeline.topics.crm_profiles
    assert letters[0]["reason"]["code"] == "schema_violation"
    wait_for(
        lambda: pipeline.metric(port, "persona_events_processed_total", type="crm_record") == 1,
        20,
        lambda: "valid CRM record not counted",
    )


def test_http_ingestion_accepts_valid_events_and_explains_each_rejection(pipeline: Pipeline) -> None:
    _, port = pipeline.start_worker()
    batch = [event("h1", "anon-h"), {"type": "page_view"}, event("h2", "anon-h", timestamp=iso(-86400))]
    status, body = post(port, "/v1/events", json.dumps(batch).encode())
    assert status == 202
    assert body["accepted"] == 1 and body["rejected"] == 2
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected"]
    assert body["results"][1]["reason"]["code"] == "unsupported_schema_version"
    assert body["results"][2]["reason"]["code"] == "timestamp_out_of_range"
    wait_for(
        lambda: pipeline.activity("anon-h").get("events") == "1",
        30,
        lambda: "accepted HTTP event never reached the activity table",
    )

    assert post(port, "/v1/events", b"{not json")[0] == 400
    assert post(port, "/v1/events", b'"a string"')[0] == 400

    # A request's events of one visitor are published as one batch record, applied event by event.
    visits = [event("h3", "anon-h"), event("h4", "anon-i"), product_view("h5", "anon-h"), event("h6", "anon-h")]
    status, body = post(port, "/v1/events", json.dumps({"events": visits}).encode())
    assert status == 202 and body["accepted"] == 4
    counts = lambda: (pipeline.activity("anon-h").get("events"), pipeline.activity("anon-i").get("events"))  # noqa: E731
    wait_for(lambda: counts() == ("4", "1"), 30, lambda: f"HTTP batch not applied: {counts()}")
    published = pipeline.consume(pipeline.topics.clickstream, expected=3)  # h1, anon-h's batch, anon-i's event
    assert [len(r["events"]) if "events" in r else r["event_id"] for r in published] == ["h1", 3, "h4"]


def orjson_dumps(doc: object) -> bytes:
    import orjson

    return orjson.dumps(doc)
