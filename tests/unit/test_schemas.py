"""The JSON Schemas of every topic are valid, and their examples and known-bad records behave.

Examples are validated twice: with ``jsonschema`` (Draft-07, formats checked) as the reference,
and with ``fastjsonschema``, the engine the worker compiles the same files with, so the two
cannot silently disagree about the contract.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

Json = dict[str, Any]

SCHEMA_FILES = sorted(SCHEMAS.glob("*.json"))
EXAMPLE_FILES = sorted(EXAMPLES.glob("*/*.json"))


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def schema_of(topic: str) -> Json:
    data: Json = load(SCHEMAS / f"{topic}.v1.json")
    return data


def validator(topic: str) -> Draft7Validator:
    return Draft7Validator(schema_of(topic), format_checker=Draft7Validator.FORMAT_CHECKER)


_COMPILED: dict[str, Callable[[Any], Any]] = {}


def worker_validate(topic: str, record: Any) -> None:
    """Validate as the worker does (fastjsonschema); raises JsonSchemaValueException."""
    if topic not in _COMPILED:
        _COMPILED[topic] = fastjsonschema.compile(schema_of(topic))
    _COMPILED[topic](record)


def example(topic: str, name: str) -> Json:
    data: Json = load(EXAMPLES / topic / f"{name}.json")
    return data


def local_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from local_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from local_refs(item)


def resolve_pointer(root: Json, ref: str) -> Any:
    node: Any = root
    for token in [t for t in ref.removeprefix("#").split("/") if t]:
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


# --- schema files ---------------------------------------------------------------------------


def test_date_time_format_is_really_checked() -> None:
    # jsonschema only checks "date-time" when rfc3339-validator is installed; without it every
    # format assertion below would pass vacuously.
    checker = Draft7Validator.FORMAT_CHECKER
    assert "date-time" in checker.checkers, "pip install rfc3339-validator (jsonschema[format])"
    assert not checker.conforms("2025-06-14T09:12:03", "date-time")


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_valid_draft_07(path: Path) -> None:
    schema = load(path)
    assert schema["$schema"] == DRAFT_07
    Draft7Validator.check_schema(schema)  # meta-validation against the Draft-07 meta-schema
    assert schema["$id"].endswith(f"/{path.name}")
    assert schema.get("title") and schema.get("description")


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_ref_resolves(path: Path) -> None:
    # jsonschema resolves $ref lazily, so a broken one only shows when a record reaches it.
    schema = load(path)
    for ref in local_refs(schema):
        assert ref.startswith("#/"), f"{path.name}: only local refs are allowed, got {ref}"
        assert isinstance(resolve_pointer(schema, ref), dict), (
            f"{path.name}: {ref} does not resolve"
        )


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_file_is_named_after_its_version(path: Path) -> None:
    schema = load(path)
    props = schema.get("properties") or schema["$defs"]["envelope"]["properties"]
    version = props["schema_version"]["const"]
    assert path.name.endswith(f".v{version}.json")
    assert schema["$id"].endswith(f".v{version}.json")


def test_clickstream_has_a_definition_per_type() -> None:
    schema = schema_of("clickstream")
    types = schema["$defs"]["envelope"]["properties"]["type"]["enum"]
    assert len(types) == 12
    conditioned = [
        branch["if"]["properties"]["type"]["const"] for branch in schema["allOf"] if "if" in branch
    ]
    assert conditioned == types
    for t in types:
        assert t in schema["$defs"], f"missing $defs/{t}"


# --- examples -------------------------------------------------------------------------------


def test_every_schema_has_examples_and_every_example_a_schema() -> None:
    topics = {p.name.removesuffix(".v1.json") for p in SCHEMA_FILES}
    example_topics = {p.parent.name for p in EXAMPLE_FILES}
    assert example_topics == topics


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_example_validates(path: Path) -> None:
    topic = path.parent.name
    record = load(path)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(topic).iter_errors(record)]
    assert errors == []
    worker_validate(topic, record)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_example_file_is_canonical_json(path: Path) -> None:
    # One formatting, so diffs stay readable and the doc generator shows them unchanged.
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_one_clickstream_example_per_type_named_after_it() -> None:
    types = schema_of("clickstream")["$defs"]["envelope"]["properties"]["type"]["enum"]
    names = sorted(p.stem for p in (EXAMPLES / "clickstream").glob("*.json"))
    assert names == sorted(types)
    for t in types:
        assert example("clickstream", t)["type"] == t


def test_example_ids_are_unique_per_topic() -> None:
    id_fields = {
        "clickstream": "event_id",
        "clickstream-batch": "batch_id",
        "crm-profiles": "record_id",
        "dead-letters": "dead_letter_id",
        "identity-changes": "change_id",
        "segment-changes": "change_id",
        "session-summaries": "session_id",
        "recommendations": "recommendation_id",
        "consent-audit": "audit_id",
        "profile-erasures": "erasure_id",
    }
    assert set(id_fields) == {p.parent.name for p in EXAMPLE_FILES}
    for topic, key in id_fields.items():
        ids = [load(p)[key] for p in sorted((EXAMPLES / topic).glob("*.json"))]
        assert len(ids) == len(set(ids)), f"{topic}: duplicate {key} in examples"


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "dead-letters").glob("*.json")), ids=lambda p: p.stem
)
def test_dead_letter_example_is_self_consistent(path: Path) -> None:
    letter = load(path)
    raw = base64.b64decode(letter["payload"]["base64"], validate=True)
    assert letter["payload"]["size"] == len(raw)
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    assert letter["payload"]["text"] == text
    source = letter["source"]
    index = f":{source['index']}" if "index" in source else ""  # one event of a batch record
    assert letter["dead_letter_id"] == f"{source['topic']}:{source['partition']}:{source['offset']}{index}"
    if source.get("key_base64") is not None:
        base64.b64decode(source["key_base64"], validate=True)
    assert letter["reason"]["code"] == path.stem, "dead-letter examples are named after their code"


def test_recommendation_click_points_at_a_recommendation_example() -> None:
    click = example("clickstream", "recommendation_click")
    rec = example("recommendations", "recommendation")
    assert click["properties"]["recommendation_id"] == rec["recommendation_id"]
    assert click["properties"]["product_id"] in {i["product_id"] for i in rec["items"]}


# --- known-bad records ----------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A valid example broken in one way, and the one error it must produce."""

    id: str
    topic: str
    base: str
    change: Callable[[Json], None]
    keyword: str
    path: list[str | int] = field(default_factory=list)


def _set(path: list[str | int], value: Any) -> Callable[[Json], None]:
    def change(record: Json) -> None:
        node: Any = record
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _drop(path: list[str | int]) -> Callable[[Json], None]:
    def change(record: Json) -> None:
        node: Any = record
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


BAD: list[Bad] = [
    # what the worker dead-letters as unsupported_schema_version
    Bad(
        "version-2",
        "clickstream",
        "search",
        _set(["schema_version"], 2),
        "const",
        ["schema_version"],
    ),
    Bad(
        "version-as-string",
        "clickstream",
        "search",
        _set(["schema_version"], "1"),
        "const",
        ["schema_version"],
    ),
    Bad("version-missing", "clickstream", "search", _drop(["schema_version"]), "required"),
    # unknown_type
    Bad(
        "unknown-type", "clickstream", "page_view", _set(["type"], "wishlist_add"), "enum", ["type"]
    ),
    # schema_violation: envelope
    Bad(
        "event-id-empty", "clickstream", "search", _set(["event_id"], ""), "minLength", ["event_id"]
    ),
    Bad("anonymous-id-missing", "clickstream", "search", _drop(["anonymous_id"]), "required"),
    Bad(
        "timestamp-without-offset",
        "clickstream",
        "search",
        _set(["timestamp"], "2025-06-14T09:12:03"),
        "format",
        ["timestamp"],
    ),
    Bad(
        "timestamp-not-a-date",
        "clickstream",
        "search",
        _set(["timestamp"], "2025-02-30T10:00:00Z"),
        "format",
        ["timestamp"],
    ),
    Bad(
        "timestamp-epoch-number",
        "clickstream",
        "search",
        _set(["timestamp"], 1749892323),
        "type",
        ["timestamp"],
    ),
    Bad(
        "unknown-top-level-field",
        "clickstream",
        "search",
        _set(["ip"], "203.0.113.7"),
        "additionalProperties",
    ),
    Bad(
        "user-id-number", "clickstream", "purchase", _set(["user_id"], 184223), "anyOf", ["user_id"]
    ),
    Bad(
        "channel-unknown",
        "clickstream",
        "search",
        _set(["context", "channel"], "fax"),
        "enum",
        ["context", "channel"],
    ),
    Bad(
        "utm-unknown-key",
        "clickstream",
        "page_view",
        _set(["context", "utm", "gclid"], "x"),
        "additionalProperties",
        ["context", "utm"],
    ),
    # schema_violation: type-specific properties
    Bad("search-without-properties", "clickstream", "search", _drop(["properties"]), "required"),
    Bad(
        "search-empty-query",
        "clickstream",
        "search",
        _set(["properties", "query"], ""),
        "minLength",
        ["properties", "query"],
    ),
    Bad(
        "product-view-without-price",
        "clickstream",
        "product_view",
        _drop(["properties", "price"]),
        "required",
        ["properties"],
    ),
    Bad(
        "price-as-string",
        "clickstream",
        "product_view",
        _set(["properties", "price"], "129.90"),
        "type",
        ["properties", "price"],
    ),
    Bad(
        "price-negative",
        "clickstream",
        "product_view",
        _set(["properties", "price"], -1),
        "minimum",
        ["properties", "price"],
    ),
    Bad(
        "currency-lower-case",
        "clickstream",
        "product_view",
        _set(["properties", "currency"], "eur"),
        "pattern",
        ["properties", "currency"],
    ),
    Bad(
        "cart-quantity-zero",
        "clickstream",
        "add_to_cart",
        _set(["properties", "quantity"], 0),
        "minimum",
        ["properties", "quantity"],
    ),
    Bad(
        "cart-quantity-fraction",
        "clickstream",
        "remove_from_cart",
        _set(["properties", "quantity"], 1.5),
        "type",
        ["properties", "quantity"],
    ),
    Bad(
        "purchase-no-items",
        "clickstream",
        "purchase",
        _set(["properties", "items"], []),
        "minItems",
        ["properties", "items"],
    ),
    Bad(
        "purchase-item-without-category",
        "clickstream",
        "purchase",
        _drop(["properties", "items", 0, "category"]),
        "required",
        ["properties", "items", 0],
    ),
    Bad(
        "checkout-item-quantity-zero",
        "clickstream",
        "checkout_start",
        _set(["properties", "items", 0, "quantity"], 0),
        "minimum",
        ["properties", "items", 0, "quantity"],
    ),
    Bad(
        "identify-empty-traits",
        "clickstream",
        "identify",
        _set(["properties", "traits"], {}),
        "minProperties",
        ["properties", "traits"],
    ),
    Bad(
        "identify-unknown-trait",
        "clickstream",
        "identify",
        _set(["properties", "traits", "ssn"], "078-05-1120"),
        "additionalProperties",
        ["properties", "traits"],
    ),
    Bad(
        "identify-country-name",
        "clickstream",
        "identify",
        _set(["properties", "traits", "country"], "United Kingdom"),
        "pattern",
        ["properties", "traits", "country"],
    ),
    Bad(
        "email-open-without-campaign",
        "clickstream",
        "email_open",
        _drop(["properties", "campaign_id"]),
        "required",
        ["properties"],
    ),
    Bad(
        "reco-click-without-reco-id",
        "clickstream",
        "recommendation_click",
        _drop(["properties", "recommendation_id"]),
        "required",
        ["properties"],
    ),
    Bad(
        "consent-no-purpose",
        "clickstream",
        "consent",
        _set(["properties", "purposes"], {}),
        "minProperties",
        ["properties", "purposes"],
    ),
    Bad(
        "consent-unknown-purpose",
        "clickstream",
        "consent",
        _set(["properties", "purposes", "profiling"], True),
        "additionalProperties",
        ["properties", "purposes"],
    ),
    Bad(
        "consent-as-string",
        "clickstream",
        "consent",
        _set(["properties", "purposes", "marketing"], "yes"),
        "type",
        ["properties", "purposes", "marketing"],
    ),
    # crm-profiles
    Bad("crm-without-traits", "crm-profiles", "crm_record", _drop(["traits"]), "required"),
    Bad(
        "crm-unknown-trait",
        "crm-profiles",
        "crm_record",
        _set(["traits", "ssn"], "x"),
        "additionalProperties",
        ["traits"],
    ),
    Bad(
        "crm-dob-format",
        "crm-profiles",
        "crm_record",
        _set(["traits", "date_of_birth"], "02/04/1988"),
        "pattern",
        ["traits", "date_of_birth"],
    ),
    Bad(
        "crm-version-2",
        "crm-profiles",
        "pos_record",
        _set(["schema_version"], 2),
        "const",
        ["schema_version"],
    ),
    # outputs
    Bad(
        "dead-letter-unknown-code",
        "dead-letters",
        "schema_violation",
        _set(["reason", "code"], "oops"),
        "enum",
        ["reason", "code"],
    ),
    Bad(
        "dead-letter-negative-offset",
        "dead-letters",
        "invalid_json",
        _set(["source", "offset"], -1),
        "minimum",
        ["source", "offset"],
    ),
    Bad(
        "identity-clear-identifier",
        "identity-changes",
        "merged",
        _set(["evidence", 0, "identifier_hash"], "jane.doe@example.com"),
        "pattern",
        ["evidence", 0, "identifier_hash"],
    ),
    Bad(
        "identity-unknown-change",
        "identity-changes",
        "merged",
        _set(["change"], "linked"),
        "enum",
        ["change"],
    ),
    Bad(
        "segment-unknown-change",
        "segment-changes",
        "entered_rule",
        _set(["change"], "stayed"),
        "enum",
        ["change"],
    ),
    Bad(
        "segment-extra-field",
        "segment-changes",
        "entered_rule",
        _set(["email"], "jane.doe@example.com"),
        "additionalProperties",
    ),
    Bad(
        "session-zero-events",
        "session-summaries",
        "session_summary",
        _set(["events"], 0),
        "minimum",
        ["events"],
    ),
    Bad(
        "session-unknown-close-reason",
        "session-summaries",
        "session_summary",
        _set(["close_reason"], "logout"),
        "enum",
        ["close_reason"],
    ),
    Bad(
        "recommendation-item-without-score",
        "recommendations",
        "recommendation",
        _drop(["items", 0, "score"]),
        "required",
        ["items", 0],
    ),
    Bad(
        "consent-audit-non-boolean",
        "consent-audit",
        "granted",
        _set(["purposes", "marketing"], "no"),
        "type",
        ["purposes", "marketing"],
    ),
    Bad("erasure-without-tables", "profile-erasures", "erasure", _drop(["tables"]), "required"),
    Bad(
        "erasure-clear-identifier",
        "profile-erasures",
        "erasure",
        _set(["identifier_hashes", 0], "+44 20 7946 0958"),
        "pattern",
        ["identifier_hashes", 0],
    ),
]


def test_bad_ids_are_unique() -> None:
    assert len({b.id for b in BAD}) == len(BAD)


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.id)
def test_known_bad_record_fails_for_the_expected_reason(bad: Bad) -> None:
    record = copy.deepcopy(example(bad.topic, bad.base))
    bad.change(record)
    errors: list[ValidationError] = list(validator(bad.topic).iter_errors(record))
    found = [(e.validator, list(e.absolute_path)) for e in errors]
    assert found == [(bad.keyword, bad.path)], f"{bad.id}: {[e.message for e in errors]}"
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        worker_validate(bad.topic, record)
