"""Dead letters keep the original bytes and match their published schema."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
from hypothesis import given
from hypothesis import strategies as st

from app.events.deadletters import dead_letter
from app.events.validation import Rejection

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "dead-letters.v1.json").read_text())


@given(st.binary(max_size=300), st.none() | st.binary(max_size=20), st.integers(0, 2**40))
def test_any_bytes_round_trip_through_a_schema_valid_dead_letter(raw: bytes, key: bytes | None, offset: int) -> None:
    letter = dead_letter(
        raw,
        Rejection("invalid_json", "bad", None),
        topic="clickstream",
        partition=2,
        offset=offset,
        key=key,
        timestamp_ms=1,
        now=1_700_000_000.0,
    )
    jsonschema.validate(letter, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert base64.b64decode(letter["payload"]["base64"]) == raw
    assert letter["dead_letter_id"] == f"clickstream:2:{offset}"
