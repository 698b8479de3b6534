"""Parse and validate input records against the versioned contract in ``schemas/``.

One function per input topic turns raw bytes into either a valid record or a
:class:`Rejection` with a reason code from the dead-letter contract. The Kafka
agents and the HTTP endpoint share these functions, so a publisher gets the same
verdict whichever way it sends.

Examples
--------
>>> v = Validator.default()
>>> ok = v.clickstream(b'{"schema_version": 1, "event_id": "e1", "type": "page_view",'
...                    b' "timestamp": "2026-11-23T10:00:00Z", "anonymous_id": "a1"}',
...                    now=1795428060.0)
>>> ok.type, ok.anonymous_id, ok.ts
('page_view', 'a1', 1795428000.0)
>>> v.clickstream(b'{"schema_version": 1', now=0.0).code
'invalid_json'
>>> v.clickstream(b'{"schema_version": 1, "event_id": "e1", "type": "teleport",'
...               b' "timestamp": "2026-11-23T10:00:00Z", "anonymous_id": "a1"}', now=0.0).code
'unknown_type'

A clickstream record may also be a *batch* of one visitor's events
(``schemas/clickstream-batch.v1.json``); :meth:`Validator.clickstream_items` gives one
verdict per event, with its index:

>>> e = lambda i, anon: {"schema_version": 1, "event_id": f"e{i}", "type": "page_view",
...                      "timestamp": "2026-11-23T10:00:00Z", "anonymous_id": anon}
>>> batch = orjson.dumps({"schema_version": 1, "batch_id": "b1", "events": [e(1, "a1"), e(2, "a1"), e(3, "a2")]})
>>> items = v.clickstream_items(batch, 1795428060.0)
>>> [(i.batch_index, getattr(i.result, "event_id", None) or i.result.code) for i in items]
[(0, 'e1'), (1, 'e2'), (2, 'batch_mixed_anonymous_ids')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import fastjsonschema
import orjson

SCHEMA_DIR: Final = Path(__file__).resolve().parents[2] / "schemas"
SUPPORTED_VERSION: Final = 1
# Earliest timestamp accepted at all, whatever max_event_age says: 2000-01-01T00:00:00Z.
EPOCH_FLOOR: Final = 946684800.0


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused: a contract reason code, a message and the offending field."""

    code: str
    message: str
    path: str | None = None
    #: For ``processing_error``: the stage whose code failed on the record, and the exception's type.
    stage: str | None = None
    exception: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        reason = {"code": self.code, "message": self.message, "path": self.path}
        if self.stage is not None:
            reason["stage"] = self.stage
            reason["exception"] = self.exception
        return reason


#: Longest exception text a ``processing_error`` dead letter quotes (the text may echo input).
MAX_ERROR_TEXT = 300
#: Deepest nesting a record may have. No event needs more than a handful of levels; orjson
#: writes at most 254, so a record nested deeper passed validation and then failed where a
#: stage wrote it again (dead-lettered as ``processing_error``: found by the worker fuzz).
MAX_NESTING = 64


def processing_error(stage: str, exc: BaseException) -> Rejection:
    """The rejection of a record a stage's code failed on: it is dead-lettered and the stage goes on.

    >>> processing_error("profiles", KeyError("x")).as_dict()
    {'code': 'processing_error', 'message': "profiles could not process this record: KeyError: 'x'", \
'path': None, 'stage': 'profiles', 'exception': 'KeyError'}
    """
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > MAX_ERROR_TEXT:
        text = text[:MAX_ERROR_TEXT] + "..."
    return Rejection("processing_error", f"{stage} could not process this record: {text}",
                     stage=stage, exception=type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """A valid clickstream event: the parsed document plus the fields every stage needs."""

    data: dict[str, Any]
    type: str
    event_id: str
    anonymous_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """A valid CRM/POS customer record."""

    data: dict[str, Any]
    record_id: str
    source: str


class Item(NamedTuple):
    """The verdict on one event of a clickstream record."""

    #: Its index in a batch record's ``events``; ``None`` for a record of one event, or for a
    #: whole record refused before any of its events was read.
    batch_index: int | None
    result: Event | Rejection
    #: The event's own document, for the dead letter of one event of a batch (``None`` otherwise).
    doc: Any = None


@dataclass(frozen=True)
class Limits:
    max_record_bytes: int = 65536
    max_clock_skew_seconds: float = 300.0
    max_event_age_days: float = 90.0


class Validator:
    """Compiled validators for every input topic; build once per process and share."""

    def __init__(self, limits: Limits | None = None, schema_dir: Path = SCHEMA_DIR) -> None:
        self.limits = limits or Limits()
        clickstream = _load(schema_dir / "clickstream.v1.json")
        defs = clickstream["$defs"]
        self.event_types: frozenset[str] = frozenset(defs["envelope"]["properties"]["type"]["enum"])
        self._envelope = _compile_def(defs, "envelope")
        self._by_type = {t: _compile_def(defs, t) for t in self.event_types}
        self._batch = fastjsonschema.compile(_load(schema_dir / "clickstream-batch.v1.json"))
        self._crm = fastjsonschema.compile(_load(schema_dir / "crm-profiles.v1.json"))

    @classmethod
    def default(cls) -> Validator:
        return cls()

    def clickstream(self, raw: bytes, now: float) -> Event | Rejection:
        """Validate one ``clickstream`` record; ``now`` (epoch seconds) bounds its timestamp."""
        doc = self._parse(raw)
        if isinstance(doc, Rejection):
            return doc
        return self.clickstream_document(doc, now)

    def clickstream_items(self, raw: bytes, now: float) -> list[Item]:
        """Validate one ``clickstream`` record, an event or a batch of events: one verdict per event.

        A batch's events are each validated on their own; one whose ``anonymous_id`` differs from
        the first valid event's is refused as ``batch_mixed_anonymous_ids`` (the record's key, and
        so its partition and its per-visitor state, is that one visitor's).
        """
        doc = self._parse(raw)
        if isinstance(doc, Rejection):
            return [Item(None, doc)]
        if isinstance(doc, dict) and "events" in doc and "type" not in doc:
            return self.clickstream_batch(doc, now)
        return [Item(None, self.clickstream_document(doc, now))]

    def clickstream_batch(self, doc: dict[str, Any], now: float) -> list[Item]:
        """Validate an already-parsed batch record (``schemas/clickstream-batch.v1.json``)."""
        rejection = _version_rejection(doc) or _check(self._batch, doc)
        if rejection:
            return [Item(None, rejection)]
        items: list[Item] = []
        visitor: str | None = None
        for index, event_doc in enumerate(doc["events"]):
            result = self.clickstream_document(event_doc, now)
            if isinstance(result, Event):
                if visitor is None:
                    visitor = result.anonymous_id
                elif result.anonymous_id != visitor:
                    result = Rejection(
                        "batch_mixed_anonymous_ids",
                        f"events[{index}] has another anonymous_id than the batch's first valid event",
                        "anonymous_id",
                    )
            items.append(Item(index, result, event_doc))
        return items

    def clickstream_document(self, doc: Any, now: float) -> Event | Rejection:
        """Validate an already-parsed clickstream document (the HTTP endpoint's entry point)."""
        if not isinstance(doc, dict):
            return Rejection("not_an_object", f"expected a JSON object, got {_json_kind(doc)}")
        version_rejection = _version_rejection(doc)
        if version_rejection:
            return version_rejection
        event_type = doc.get("type")
        if isinstance(event_type, str) and event_type not in self.event_types:
            return Rejection("unknown_type", f"unknown event type {event_type[:64]!r}", "type")
        rejection = _check(self._envelope, doc)
        if rejection:
            return rejection
        event_type = str(doc["type"])  # the envelope guarantees one of the known types
        rejection = _check(self._by_type[event_type], doc)
        if rejection:
            return rejection
        ts = parse_timestamp(doc["timestamp"])
        if ts is None:
            return Rejection("schema_violation", "timestamp must be RFC 3339 with a UTC offset", "timestamp")
        oldest = max(EPOCH_FLOOR, now - self.limits.max_event_age_days * 86400.0)
        if not oldest <= ts <= now + self.limits.max_clock_skew_seconds:
            return Rejection(
                "timestamp_out_of_range",
                f"timestamp {doc['timestamp']} is outside the accepted range "
                f"({self.limits.max_event_age_days:g} days old to {self.limits.max_clock_skew_seconds:g} s ahead)",
                "timestamp",
            )
        return Event(doc, event_type, doc["event_id"], doc["anonymous_id"], ts)

    def crm_record(self, raw: bytes) -> CrmRecord | Rejection:
        """Validate one ``crm-profiles`` record."""
        doc = self._parse(raw)
        if isinstance(doc, Rejection):
            return doc
        if not isinstance(doc, dict):
            return Rejection("not_an_object", f"expected a JSON object, got {_json_kind(doc)}")
        rejection = _version_rejection(doc) or _check(self._crm, doc)
        if rejection:
            return rejection
        return CrmRecord(doc, doc["record_id"], doc["source"])

    def _parse(self, raw: bytes) -> Any:
        return parse_json(raw, self.limits.max_record_bytes)


def parse_json(raw: bytes, max_record_bytes: int) -> Any:
    """One JSON value from a record's bytes, or the :class:`Rejection` of the first check it fails.

    Shared by every input topic (the internal identity input too), so size, encoding and
    syntax are refused with the same codes everywhere.

    Examples
    --------
    >>> parse_json(b'[1]', 10), parse_json(b'{"a"', 10).code, parse_json(b'[1, 2, 3]', 4).code
    ([1], 'invalid_json', 'record_too_large')
    >>> parse_json(bytes([0x22, 0xFF, 0x22]), 10).code
    'invalid_encoding'
    >>> parse_json(b"[" * 65 + b"]" * 65, 1000).message, parse_json(b'["[[[["]', 10)
    ('nested deeper than 64 levels', ['[[[['])
    """
    if len(raw) > max_record_bytes:
        return Rejection("record_too_large", f"record is {len(raw)} bytes, the limit is {max_record_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if _is_bad_utf8(raw):
            return Rejection("invalid_encoding", "record is not valid UTF-8")
        return Rejection("invalid_json", f"not valid JSON: {exc}")
    # Counting brackets is cheap; only a record with that many is walked (they may be in strings).
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING and nesting(doc, MAX_NESTING) > MAX_NESTING:
        return Rejection("schema_violation", f"nested deeper than {MAX_NESTING} levels")
    return doc


def nesting(doc: Any, limit: int) -> int:
    """How many levels of arrays and objects ``doc`` has, counted up to ``limit + 1``.

    >>> nesting(1, 5), nesting({"a": [1, {"b": []}]}, 5), nesting([[[[[[[]]]]]]], 3)
    (0, 4, 4)
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _version_rejection(doc: dict[str, Any]) -> Rejection | None:
    """Why ``schema_version`` is not the supported one: an integer, not ``1.0`` nor ``true`` (both ``== 1``).

    >>> [_version_rejection({"schema_version": v}) is None for v in (1, 1.0, True, "1", None)]
    [True, False, False, False, False]
    """
    version = doc.get("schema_version")
    if type(version) is int and version == SUPPORTED_VERSION:
        return None
    return Rejection(
        "unsupported_schema_version",
        f"schema_version {version!r} is not supported (supported: {SUPPORTED_VERSION})",
        "schema_version",
    )


def _is_bad_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def _compile_def(defs: dict[str, Any], name: str) -> Any:
    return fastjsonschema.compile({"$ref": f"#/$defs/{name}", "$defs": defs})


def _check(validate: Any, doc: dict[str, Any]) -> Rejection | None:
    try:
        validate(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = ".".join(str(p) for p in exc.path[1:]) if exc.path else None
        message = exc.message
        if message.startswith("data."):
            message = message[len("data.") :]
        elif message.startswith("data "):
            message = "record " + message[len("data ") :]
        return Rejection("schema_violation", message, path or None)
    return None


def parse_timestamp(value: str) -> float | None:
    """Epoch seconds of an RFC 3339 time with a zone; ``None`` if unreadable or without zone.

    >>> parse_timestamp("1970-01-01T00:01:00Z"), parse_timestamp("1970-01-01T00:01:00")
    (60.0, None)
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def _json_kind(doc: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(doc), "a number")
