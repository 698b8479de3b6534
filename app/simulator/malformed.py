"""Deliberately invalid records, each with the dead-letter reason it must get.

A malformed record is made from a valid one (so its key and timestamp are
realistic) with exactly one thing broken, chosen so that the reason is
unambiguous under the order in which the contract checks records: bytes must
be UTF-8, then JSON, then an object, then ``schema_version`` 1, then a known
``type``, then the schema, then the timestamp range. For instance an unknown
type keeps ``schema_version`` 1, and a truncated document is cut on a
character boundary so that it stays valid UTF-8.

Examples
--------
>>> import random, orjson
>>> valid = SimRecord("crm-profiles", b"CRM-1", orjson.dumps({"schema_version": 1,
...     "record_id": "CRM-1", "source": "crm", "traits": {"first_name": "Zoë"}}),
...     {"customer_id": "cust-000001", "archetype": "lapsed"})
>>> malformer = Malformer(random.Random(4), "clickstream", "crm-profiles")
>>> bad = malformer.corrupt(valid)
>>> bad.topic, bad.truth["expected_reason"] in CRM_REASONS, bad.key != valid.key
('crm-profiles', True, True)
"""

from __future__ import annotations

import random
from typing import Any, Final

import orjson

from app.simulator.clock import DAY_MS, format_ms
from app.simulator.ids import uuid4_from
from app.simulator.record import SimRecord

INVALID_ENCODING: Final = "invalid_encoding"
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
UNKNOWN_TYPE: Final = "unknown_type"
SCHEMA_VIOLATION: Final = "schema_violation"
UNSUPPORTED_SCHEMA_VERSION: Final = "unsupported_schema_version"
TIMESTAMP_OUT_OF_RANGE: Final = "timestamp_out_of_range"

#: Reason codes for clickstream records and their relative frequency.
CLICKSTREAM_REASONS: Final[dict[str, float]] = {
    INVALID_ENCODING: 1.0,
    INVALID_JSON: 2.0,
    NOT_AN_OBJECT: 1.0,
    UNKNOWN_TYPE: 1.0,
    SCHEMA_VIOLATION: 3.0,
    UNSUPPORTED_SCHEMA_VERSION: 1.0,
    TIMESTAMP_OUT_OF_RANGE: 1.5,
}
#: CRM records have no ``type`` and no event timestamp to be out of range.
CRM_REASONS: Final[dict[str, float]] = {
    INVALID_ENCODING: 1.0,
    INVALID_JSON: 2.0,
    NOT_AN_OBJECT: 1.0,
    SCHEMA_VIOLATION: 3.0,
    UNSUPPORTED_SCHEMA_VERSION: 1.0,
}

UNKNOWN_TYPES: Final = ("add_to_wishlist", "video_play", "share", "app_install", "page_leave")
# Byte sequences that are not UTF-8, as legacy systems produce them: Latin-1 and
# Windows-1252 text, a broken two-byte sequence, an encoded surrogate (CESU-8), a
# stray continuation byte.
BAD_BYTES: Final = (b"\xe9", b"\x93quoted\x94", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xff\xfe")
# A character that never occurs in generated documents; its bytes are replaced.
_MARK: Final = "\u2603"
_MARK_BYTES: Final = _MARK.encode()
# Required ``properties`` of each event type, from schemas/clickstream.v1.json.
REQUIRED_PROPERTIES: Final[dict[str, tuple[str, ...]]] = {
    "product_view": ("product_id", "category", "price"),
    "search": ("query",),
    "add_to_cart": ("product_id", "category", "price", "quantity"),
    "remove_from_cart": ("product_id", "category", "price", "quantity"),
    "purchase": ("order_id", "items", "revenue", "currency"),
    "identify": ("traits",),
    "email_open": ("campaign_id",),
    "email_click": ("campaign_id",),
    "recommendation_click": ("recommendation_id", "product_id"),
    "consent": ("purposes",),
}


class Malformer:
    """Turns valid records into invalid ones, with a reason code in the truth.

    Parameters
    ----------
    rng : random.Random
        Drives every choice (which reason, which field, fresh ids).
    clickstream_topic, crm_topic : str
        Topic names, to tell the two kinds of record apart.
    """

    def __init__(self, rng: random.Random, clickstream_topic: str, crm_topic: str) -> None:
        self.rng = rng
        self.clickstream_topic = clickstream_topic
        self.crm_topic = crm_topic
        self._click_reasons = list(CLICKSTREAM_REASONS)
        self._click_weights = list(CLICKSTREAM_REASONS.values())
        self._crm_reasons = list(CRM_REASONS)
        self._crm_weights = list(CRM_REASONS.values())

    def corrupt(self, template: SimRecord) -> SimRecord:
        """A malformed record derived from the valid ``template``.

        Clickstream records keep the template's key (the same client sent the
        bad payload) but get a fresh ``event_id``; CRM records get a fresh
        ``record_id`` and key, so no valid record shares their identity.
        """
        rng = self.rng
        doc: dict[str, Any] = orjson.loads(template.value)
        truth = template.truth or {}
        if template.topic == self.crm_topic:
            reason = rng.choices(self._crm_reasons, self._crm_weights)[0]
            record_id = f"{doc['record_id'].split('-')[0]}-{rng.getrandbits(64):016x}"
            doc["record_id"] = record_id
            key = record_id.encode()
            value = self._crm(reason, doc)
        else:
            reason = rng.choices(self._click_reasons, self._click_weights)[0]
            doc["event_id"] = uuid4_from(rng.getrandbits(128))
            key = template.key
            value = self._clickstream(reason, doc)
        return SimRecord(template.topic, key, value, {
            "customer_id": truth.get("customer_id"),
            "archetype": truth.get("archetype"),
            "expected_reason": reason,
        })

    # ------------------------------------------------------------------ shared

    def _bad_encoding(self, doc: dict[str, Any]) -> bytes:
        return orjson.dumps(doc).replace(_MARK_BYTES, self.rng.choice(BAD_BYTES))

    def _bad_json(self, doc: dict[str, Any]) -> bytes:
        rng = self.rng
        raw = orjson.dumps(doc)
        kind = rng.randrange(4)
        if kind == 0:
            return repr(doc).encode()  # a Python dict printed instead of serialised
        if kind == 1:
            return raw[:-1] + b",}"  # trailing comma
        if kind == 2:
            return raw + raw  # two documents in one record
        # Truncated in transit; cut on a character boundary so the bytes stay UTF-8.
        cut = rng.randrange(1, len(raw))
        while cut > 1 and raw[cut] & 0xC0 == 0x80:
            cut -= 1
        return raw[:cut]

    def _not_an_object(self, doc: dict[str, Any], scalar: Any) -> bytes:
        kind = self.rng.randrange(4)
        if kind == 0:
            return orjson.dumps([doc])
        if kind == 1:
            return orjson.dumps(scalar)
        return b"null" if kind == 2 else b"42"

    # ------------------------------------------------------------------ clickstream

    def _clickstream(self, reason: str, doc: dict[str, Any]) -> bytes:
        rng = self.rng
        if reason == INVALID_ENCODING:
            doc.setdefault("context", {})["referrer"] = f"https://www.google.com/search?q=caf{_MARK}"
            return self._bad_encoding(doc)
        if reason == INVALID_JSON:
            return self._bad_json(doc)
        if reason == NOT_AN_OBJECT:
            return self._not_an_object(doc, doc["type"])
        if reason == UNKNOWN_TYPE:
            doc["type"] = rng.choice(UNKNOWN_TYPES)
        elif reason == UNSUPPORTED_SCHEMA_VERSION:
            doc["schema_version"] = 2
        elif reason == TIMESTAMP_OUT_OF_RANGE:
            if rng.random() < 0.5:
                # Unset device clocks report the epoch.
                doc["timestamp"] = format_ms(rng.randrange(0, 30 * DAY_MS))
            else:
                # Far-future: a clock set a century ahead, beyond any skew allowance.
                doc["timestamp"] = format_ms(rng.randrange(4_102_444_800_000, 7_258_118_400_000))
        else:
            self._click_schema_violation(doc)
        return orjson.dumps(doc)

    def _click_schema_violation(self, doc: dict[str, Any]) -> None:
        rng = self.rng
        props = doc.get("properties")
        options = ["missing_event_id", "missing_anonymous_id", "user_id_number", "event_id_number",
                   "extra_field", "bad_channel", "empty_anonymous_id"]
        if isinstance(props, dict) and doc["type"] in REQUIRED_PROPERTIES:
            options += ["missing_property"] * 3
        if isinstance(props, dict) and isinstance(props.get("price"), float):
            options += ["price_string"] * 2
        if isinstance(props, dict) and isinstance(props.get("quantity"), int):
            options.append("quantity_string")
        if doc["type"] == "consent":
            options.append("no_purposes")
        choice = rng.choice(options)
        if choice == "missing_event_id":
            del doc["event_id"]
        elif choice == "missing_anonymous_id":
            del doc["anonymous_id"]
        elif choice == "user_id_number":
            doc["user_id"] = rng.randrange(10**6, 10**9)
        elif choice == "event_id_number":
            doc["event_id"] = rng.randrange(10**6, 10**12)
        elif choice == "extra_field":
            doc["sessionId"] = f"s-{rng.getrandbits(32):08x}"
        elif choice == "bad_channel":
            doc.setdefault("context", {})["channel"] = "fax"
        elif choice == "empty_anonymous_id":
            doc["anonymous_id"] = ""
        elif choice == "missing_property":
            assert isinstance(props, dict)
            del props[rng.choice(REQUIRED_PROPERTIES[doc["type"]])]
        elif choice == "price_string":
            assert isinstance(props, dict)
            props["price"] = f"{props['price']:.2f}"
        elif choice == "quantity_string":
            assert isinstance(props, dict)
            props["quantity"] = str(props["quantity"])
        else:
            assert isinstance(props, dict)
            props["purposes"] = {}

    # ------------------------------------------------------------------ crm

    def _crm(self, reason: str, doc: dict[str, Any]) -> bytes:
        rng = self.rng
        traits: dict[str, Any] = doc["traits"]
        if reason == INVALID_ENCODING:
            traits["first_name"] = f"Ren{_MARK}e"
            return self._bad_encoding(doc)
        if reason == INVALID_JSON:
            return self._bad_json(doc)
        if reason == NOT_AN_OBJECT:
            return self._not_an_object(doc, doc["record_id"])
        if reason == UNSUPPORTED_SCHEMA_VERSION:
            doc["schema_version"] = 2
            return orjson.dumps(doc)
        choice = rng.randrange(7)
        if choice == 0:
            del doc["record_id"]
        elif choice == 1:
            del doc["traits"]
        elif choice == 2:
            doc["traits"] = {}
        elif choice == 3:
            traits["country"] = "United Kingdom"  # not an ISO code
        elif choice == 4:
            traits["date_of_birth"] = "12/03/1985"  # not ISO 8601
        elif choice == 5:
            traits["favourite_colour"] = "blue"  # not a known trait
        else:
            doc["source"] = ""
        return orjson.dumps(doc)
