"""Simulator files: byte-exact JSONL round trips and ground truth consistent with the records."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.simulator import JsonlFormatError, SimConfig, SimRecord, TruthWriter, iter_records
from app.simulator.jsonl import read_jsonl, write_jsonl

END = datetime(2024, 3, 1, tzinfo=UTC)


def _wire(records: list[SimRecord]) -> list[tuple[str, bytes, bytes]]:
    return [(r.topic, r.key, r.value) for r in records]


def _read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_jsonl_round_trip_preserves_every_byte_including_invalid_utf8(tmp_path: Path) -> None:
    records = list(iter_records(SimConfig(seed=8, customers=80, end=END, malformed_share=0.1)))
    invalid = [r for r in records if r.truth and r.truth.get("expected_reason") == "invalid_encoding"]
    assert invalid, "the sample should contain records that are not UTF-8"
    path = tmp_path / "run.jsonl"
    assert write_jsonl(records, path) == len(records)
    assert _wire(list(read_jsonl(path))) == _wire(records)
    lines = _read_lines(path)
    assert sum("value_b64" in line for line in lines) == len(invalid)
    assert all(set(line) <= {"topic", "key", "value", "key_b64", "value_b64"} for line in lines)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=30), st.binary(max_size=40),
                          st.one_of(st.binary(max_size=200),
                                    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))),
                max_size=20))
def test_jsonl_round_trip_of_arbitrary_records(items: list[tuple[str, bytes, bytes]]) -> None:
    records = [SimRecord(topic, key, value) for topic, key, value in items]
    buffer = io.BytesIO()
    write_jsonl(records, buffer)
    assert buffer.getvalue().count(b"\n") == len(records)
    assert _wire(list(read_jsonl(io.BytesIO(buffer.getvalue())))) == _wire(records)


@pytest.mark.parametrize(("line", "reason"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "is not a JSON object"),
    (b'{"key": "a", "value": "{}"}', '"topic" must be a non-empty string'),
    (b'{"topic": "t", "value": "{}"}', 'has neither "key" nor "key_b64"'),
    (b'{"topic": "t", "key": "a", "value_b64": "%%%"}', '"value_b64" is not valid base64'),
    (b'{"topic": "t", "key": "a", "value": "{}", "value_b64": "e30="}', 'has both "value"'),
    (b'{"topic": "t", "key": 5, "value": "{}"}', '"key" must be a string'),
])
def test_a_bad_line_is_reported_with_its_number(tmp_path: Path, line: bytes, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"topic": "t", "key": "a", "value": "{}"}\n\n' + line + b"\n")
    with pytest.raises(JsonlFormatError) as caught:
        list(read_jsonl(path))
    assert caught.value.line == 3
    assert f"{path}, line 3: " in str(caught.value)
    assert reason in str(caught.value)


def test_truth_files_agree_with_the_records(tmp_path: Path) -> None:
    config = SimConfig(seed=21, customers=120, end=END, malformed_share=0.03, duplicate_share=0.02)
    with TruthWriter(tmp_path, config) as truth:
        records = list(truth.tee(iter_records(config)))

    events = _read_lines(tmp_path / "events.jsonl")
    valid = [r for r in records if r.topic == "clickstream" and not r.malformed]
    assert [e["event_id"] for e in events] == [orjson.loads(r.value)["event_id"] for r in valid]
    assert sum(bool(e["duplicate"]) for e in events) == sum(r.duplicate for r in valid)

    sessions = _read_lines(tmp_path / "sessions.jsonl")
    assert len({s["session_id"] for s in sessions}) == len(sessions)
    assert sum(s["n_events"] for s in sessions) == sum(not e["duplicate"] for e in events)
    per_session = Counter(e["session_id"] for e in events if not e["duplicate"])
    assert all(per_session[s["session_id"]] == s["n_events"] for s in sessions)
    assert all(s["start"] <= s["end"] for s in sessions)

    crm = _read_lines(tmp_path / "crm.jsonl")
    crm_records = [r for r in records if r.topic == "crm-profiles" and not r.malformed]
    assert [c["record_id"] for c in crm] == [r.key.decode() for r in crm_records]

    malformed = _read_lines(tmp_path / "malformed.jsonl")
    positions: Counter[str] = Counter()
    expected = []
    for r in records:
        if r.malformed:
            assert r.truth is not None
            expected.append((r.topic, positions[r.topic], r.truth["expected_reason"],
                             hashlib.sha256(r.value).hexdigest()))
        positions[r.topic] += 1
    assert [(m["topic"], m["topic_position"], m["expected_reason"], m["value_sha256"])
            for m in malformed] == expected

    customers = _read_lines(tmp_path / "customers.jsonl")
    assert [c["customer_id"] for c in customers] == [f"cust-{i:06d}" for i in range(1, 121)]
    cookies = {e["anonymous_id"]: e["customer_id"] for e in events}
    for customer in customers:
        assert customer["email"] == customer["email"].strip().lower()
        assert customer["phone"].startswith("+44")
        for cookie in customer["anonymous_ids"]:
            assert cookies[cookie] == customer["customer_id"]
    assert sum(c["n_events"] for c in customers) == sum(s["n_events"] for s in sessions)


def test_truth_without_config_lists_what_the_records_showed(tmp_path: Path) -> None:
    config = SimConfig(seed=22, customers=15, end=END, max_events=800)
    with TruthWriter(tmp_path) as truth:
        for record in iter_records(config):
            truth.write(record)
    customers = _read_lines(tmp_path / "customers.jsonl")
    assert customers and all(set(c) >= {"customer_id", "archetype", "anonymous_ids", "device_ids"}
                             for c in customers)
