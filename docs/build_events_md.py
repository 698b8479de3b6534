"""Regenerate the generated parts of ``docs/events.md`` from ``schemas/`` and ``schemas/examples/``.

The prose of ``docs/events.md`` is written by hand; the field tables, the schema summary lines
and the JSON examples between markers are generated, so that the schemas and the example files
stay the single source of the contract::

    <!-- generated: summary <topic> -->                 schema file, title, schema_version
    <!-- generated: fields <topic> <pointer> [<prefix>] -->   field table of an object schema
    <!-- generated: type <event type> -->               table of a clickstream type's properties
    <!-- generated: example <topic>/<name> -->          schemas/examples/<topic>/<name>.json
    ...generated text...
    <!-- end generated -->

Usage::

    python docs/build_events_md.py           # rewrite docs/events.md in place
    python docs/build_events_md.py --check   # exit 1 if docs/events.md is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
EVENTS_MD = ROOT / "docs" / "events.md"

MARKER = re.compile(
    r"(<!-- generated: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)

Schema = dict[str, Any]

# What each field means, by topic and dotted path (``[]`` marks the items of an array).
# A field that is in a schema but not here (and has no ``description`` in the schema) makes
# the build fail, so a schema change cannot land without its documentation.
MEANINGS: dict[str, dict[str, str]] = {
    "clickstream": {
        "schema_version": "Version of this contract the event was written against.",
        "event_id": "Publisher-assigned unique id of the event; the idempotency key "
        "(retries reuse it).",
        "type": "Event type; decides what `properties` must hold (see the sections below).",
        "timestamp": "When the event happened at the source, RFC 3339 with a UTC offset "
        "(`Z` or `+02:00`); not the time it was sent.",
        "anonymous_id": "Device/browser-level visitor id (cookie, app install id). "
        "Also the record key.",
        "user_id": "Your logged-in customer id when known, else `null` or absent. "
        "Hashed by the worker.",
        "context": "Where the event came from.",
        "context.channel": "Channel the event happened on.",
        "context.device": "The device.",
        "context.device.id": "Stable device id, if the publisher has one.",
        "context.device.type": "Device class.",
        "context.device.os": "Operating system and version, free text.",
        "context.user_agent": "Browser user agent, verbatim.",
        "context.referrer": "Referring URL.",
        "context.page_url": "URL of the page (web) or deep link (app).",
        "context.locale": "BCP 47 language tag, e.g. `en-GB`.",
        "context.utm": "Campaign parameters parsed from the landing URL.",
        "context.utm.source": "`utm_source`.",
        "context.utm.medium": "`utm_medium`.",
        "context.utm.campaign": "`utm_campaign`.",
        "context.utm.term": "`utm_term`.",
        "context.utm.content": "`utm_content`.",
        "properties": "Type-specific fields, see the section of the event type.",
        "properties.title": "Page title.",
        "properties.page_type": "Kind of page, free text: `home`, `category`, `product`, ...",
        "properties.product_id": "Catalogue id of the product (SKU).",
        "properties.category": "Catalogue category of the product; `/` may separate levels.",
        "properties.price": "Unit price in `currency`, tax included, as a JSON number.",
        "properties.currency": "ISO 4217 currency code.",
        "properties.query": "Search text as typed.",
        "properties.results_count": "Number of results shown.",
        "properties.quantity": "Units added or removed by this event (not the cart total).",
        "properties.cart_id": "Id of the cart, when the publisher has one.",
        "properties.value": "Cart value at checkout start in `currency`.",
        "properties.items": "Line items.",
        "properties.items[].product_id": "Catalogue id of the product (SKU).",
        "properties.items[].category": "Catalogue category of the product.",
        "properties.items[].price": "Unit price in the event's `currency`.",
        "properties.items[].quantity": "Units bought.",
        "properties.order_id": "Id of the order in the order system.",
        "properties.revenue": "Order total in `currency`, tax included.",
        "properties.traits": "What the customer told us about themselves; clear text on the wire, "
        "identifiers are hashed by the worker.",
        "properties.traits.user_id": "Customer id (same space as the envelope's `user_id`).",
        "properties.traits.email": "E-mail address.",
        "properties.traits.phone": "Phone number, any common format.",
        "properties.traits.loyalty_id": "Loyalty card number.",
        "properties.traits.first_name": "First name.",
        "properties.traits.last_name": "Last name.",
        "properties.traits.date_of_birth": "Date of birth, `YYYY-MM-DD`.",
        "properties.traits.street": "Street address.",
        "properties.traits.city": "City.",
        "properties.traits.postcode": "Postal code.",
        "properties.traits.state": "State, county or region.",
        "properties.traits.country": "ISO 3166-1 alpha-2 country code.",
        "properties.campaign_id": "Id of the e-mail campaign.",
        "properties.message_id": "Id of the individual message sent.",
        "properties.url": "Link target that was clicked.",
        "properties.recommendation_id": "`recommendation_id` of the `recommendations` record "
        "that was shown.",
        "properties.position": "0-based position of the product in the list shown.",
        "properties.purposes": "Consent per purpose; a purpose left out keeps its previous state.",
        "properties.purposes.personalization": "May the profile be used for segmentation and "
        "recommendations.",
        "properties.purposes.marketing": "May the profile be used for marketing messages.",
        "properties.purposes.analytics": "May the events be used for analytics.",
        "properties.source": "Where consent was given: `cookie_banner`, `preference_centre`, ...",
    },
    "clickstream-batch": {
        "schema_version": "Version of this contract the batch was written against.",
        "batch_id": "Publisher-assigned id of the batch (an SDK's flush id); for tracing, not "
        "de-duplication: each event's `event_id` is its idempotency key.",
        "events": "The events, each a clickstream event as above, all of one `anonymous_id`, "
        "in the order they happened.",
    },
    "crm-profiles": {
        "schema_version": "Version of this contract the record was written against.",
        "record_id": "Id of the record in its system of record. Also the record key: "
        "a newer record with the same id replaces the older one.",
        "source": "System of record, e.g. `crm`, `pos`, `call_centre`, `ecommerce`.",
        "updated_at": "When the record last changed in the system of record.",
        "traits": "The customer's data; clear text on the wire, identifiers are hashed by the "
        "worker.",
        "traits.first_name": "First name.",
        "traits.last_name": "Last name.",
        "traits.email": "E-mail address.",
        "traits.phone": "Phone number, any common format.",
        "traits.date_of_birth": "Date of birth, `YYYY-MM-DD`.",
        "traits.street": "Street address, first line.",
        "traits.address_line_2": "Street address, second line.",
        "traits.city": "City.",
        "traits.postcode": "Postal code.",
        "traits.state": "State, county or region.",
        "traits.country": "ISO 3166-1 alpha-2 country code.",
        "traits.loyalty_id": "Loyalty card number.",
        "traits.user_id": "Customer id, same space as the clickstream `user_id`.",
    },
    "segment-changes": {
        "schema_version": "Contract version.",
        "change_id": "Unique id of this change; consumers de-duplicate on it.",
        "profile_id": "Canonical profile id (opaque; do not parse). Also the record key.",
        "segment_id": "Id of the segment (a rule name or a cluster id).",
        "segment_kind": "`rule` (declarative rule) or `cluster` (online clustering).",
        "change": "Whether the profile entered or exited the segment.",
        "at": "When the change was decided (worker time).",
        "reason": "Why: the rule and the feature values that decided it, or the distance to the "
        "centroid. Its inner shape is informative, not part of the v1 contract.",
    },
    "recommendations": {
        "schema_version": "Contract version.",
        "recommendation_id": "Unique id; echo it in `recommendation_click` events.",
        "profile_id": "Canonical profile id (opaque). Also the record key.",
        "at": "When the list was computed.",
        "strategy": "Name of the strategy that produced the list.",
        "items": "Recommended products, best first.",
        "items[].product_id": "Catalogue id of the product.",
        "items[].category": "Catalogue category of the product.",
        "items[].score": "Relative score, higher is better; comparable only within one list.",
    },
    "identity-changes": {
        "schema_version": "Contract version.",
        "change_id": "Unique id of this change; consumers de-duplicate on it.",
        "change": "`merged`: profiles were joined into `profile_id`; `split`: `profile_id` was "
        "split into `new_profile_ids`; `possible_match`: a probable but unconfirmed match, "
        "nothing changed; `refused`: a merge was refused by a safety rule.",
        "profile_id": "The surviving (or split) canonical profile id. Also the record key.",
        "absorbed_profile_ids": "Profiles merged into `profile_id`; they no longer exist.",
        "new_profile_ids": "Profiles created by a split.",
        "at": "When the change was decided.",
        "evidence": "What led to the decision.",
        "evidence[].rule": "Name of the matching or safety rule.",
        "evidence[].identifier_type": "Kind of identifier: `email`, `phone`, `user_id`, ...",
        "evidence[].identifier_hash": "Keyed hash of the normalised identifier (never the "
        "identifier itself).",
        "evidence[].field": "Trait compared by a fuzzy rule.",
        "evidence[].score": "Similarity score of the compared values.",
        "evidence[].weight": "Weight of this evidence in the decision.",
    },
    "session-summaries": {
        "schema_version": "Contract version.",
        "session_id": "Unique id of the session.",
        "profile_id": "Canonical profile id (opaque). Also the record key.",
        "start": "Timestamp of the first event of the session.",
        "end": "Timestamp of the last event of the session.",
        "duration_seconds": "`end - start` in seconds.",
        "events": "Number of events in the session.",
        "pages": "Number of `page_view` events.",
        "products_viewed": "Distinct product ids viewed in the session.",
        "categories": "Distinct categories seen in the session.",
        "cart_adds": "Number of `add_to_cart` events.",
        "cart_removes": "Number of `remove_from_cart` events.",
        "checkout_reached": "Whether a `checkout_start` happened.",
        "purchased": "Whether a `purchase` happened.",
        "revenue": "Sum of purchase revenue in the session.",
        "device_type": "Device type (`context.device.type`) of the session, if known.",
        "landing_page": "First page URL of the session, if known.",
        "referrer": "Referrer of the session's first page, if known.",
        "utm": "Campaign parameters (`context.utm`) the session started with, if any.",
        "close_reason": "Why the session closed: inactivity timeout, maximum length, or its "
        "profile was merged into another.",
    },
    "dead-letters": {
        "schema_version": "Contract version.",
        "dead_letter_id": "`<topic>:<partition>:<offset>` of the rejected record "
        "(`<topic>:<partition>:<offset>:<index>` for one event of a clickstream batch record); a "
        "replay of the same offset gives the same id. Also the record key.",
        "source": "Where the rejected record was read.",
        "source.topic": "Input topic.",
        "source.partition": "Partition of the input topic.",
        "source.offset": "Offset of the record in that partition.",
        "source.key_base64": "The record key, base64, or `null` if it had none.",
        "source.timestamp_ms": "Kafka timestamp of the record, ms since the epoch.",
        "source.index": "For one event of a clickstream batch record: its index in the batch's "
        "`events` (the payload is that event alone); absent otherwise.",
        "reason": "Why it was rejected.",
        "reason.code": "Machine-readable reason; see *Dead-letter reason codes*.",
        "reason.message": "Human-readable detail; do not parse it.",
        "reason.path": "Dotted path of the offending field (`properties.price`, "
        "`properties.items.0.quantity`) when known.",
        "payload": "The rejected record value.",
        "payload.base64": "The original value, byte for byte, base64.",
        "payload.text": "The same bytes as UTF-8 text, or `null` if they are not valid UTF-8.",
        "payload.size": "Size of the original value in bytes.",
        "received_at": "When the worker rejected it.",
    },
    "consent-audit": {
        "schema_version": "Contract version.",
        "audit_id": "Unique id of the audit record.",
        "profile_id": "Canonical profile id (opaque). Also the record key.",
        "action": "`granted`/`withdrawn`: a consent decision as recorded; `refused_processing`: "
        "a processing step was skipped because consent was missing.",
        "purposes": "The purposes concerned and their state after the decision.",
        "at": "When it was recorded.",
        "source_event_id": "`event_id` of the `consent` (or other) event that caused it, if any.",
        "detail": "Free-text detail: the consent source or the step refused.",
    },
    "profile-erasures": {
        "schema_version": "Contract version.",
        "erasure_id": "Unique id of the erasure.",
        "profile_id": "The erased canonical profile id. Also the record key.",
        "at": "When the erasure completed.",
        "requested_by": "Reference of the request (ticket, DSAR id).",
        "tables": "Tables the profile was removed from.",
        "identifier_hashes": "Keyed hashes of the identifiers that were removed, so downstream "
        "systems holding the same hashes can erase too.",
    },
}


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    required: bool
    meaning: str
    constraints: str


def load_schema(topic: str) -> Schema:
    """The v1 schema of ``topic``."""
    data: Schema = json.loads((SCHEMAS / f"{topic}.v1.json").read_text())
    return data


def topics() -> list[str]:
    """Topics that have a v1 schema file, sorted."""
    return sorted(p.name.removesuffix(".v1.json") for p in SCHEMAS.glob("*.v1.json"))


def examples() -> list[tuple[str, str]]:
    """``(topic, name)`` of every example file, sorted."""
    return sorted((p.parent.name, p.stem) for p in EXAMPLES.glob("*/*.json"))


def resolve(root: Schema, node: Schema) -> Schema:
    """Follow ``$ref`` (local JSON pointers only) until a node without one."""
    seen = 0
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        node = pointer(root, ref[1:])
        seen += 1
        if seen > 20:
            raise ValueError(f"$ref loop at {ref!r}")
    return node


def pointer(root: Schema, path: str) -> Schema:
    """The node at JSON pointer ``path`` (``/a/b``), following ``$ref`` at every step."""
    node: Any = root
    for token in [t for t in path.split("/") if t]:
        node = resolve(root, node)[token.replace("~1", "/").replace("~0", "~")]
    return resolve(root, node)


def type_of(root: Schema, node: Schema) -> str:
    node = resolve(root, node)
    if "const" in node:
        return _json_type(node["const"])
    if "enum" in node:
        kinds = sorted({_json_type(v) for v in node["enum"]})
        return " or ".join(kinds)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return " or ".join(type_of(root, n) for n in node[key])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and "items" in node:
        return f"array of {type_of(root, node['items'])}"
    return str(kind) if kind else "any"


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "object" if isinstance(value, dict) else "array"


def constraints_of(root: Schema, node: Schema) -> list[str]:
    node = resolve(root, node)
    out: list[str] = []
    for key in ("anyOf", "oneOf"):
        for branch in node.get(key, []):
            out += constraints_of(root, branch)
    if "const" in node:
        out.append(f"always `{json.dumps(node['const'])}`")
    if "enum" in node:
        out.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if node.get("format") == "date-time":
        out.append("RFC 3339 date-time with offset")
    elif "format" in node:
        out.append(f"format `{node['format']}`")
    if "pattern" in node:
        out.append(f"matches `{node['pattern']}`")
    out += _range(node, "minLength", "maxLength", "chars")
    out += _range(node, "minItems", "maxItems", "items")
    if "minimum" in node or "maximum" in node:
        lo, hi = node.get("minimum"), node.get("maximum")
        if lo is not None and hi is not None:
            out.append(f"{lo} ≤ value ≤ {hi}")
        elif lo is not None:
            out.append(f"≥ {lo}")
        else:
            out.append(f"≤ {hi}")
    if "minProperties" in node:
        out.append(f"at least {node['minProperties']} field(s)")
    extra = node.get("additionalProperties")
    if extra is False:
        out.append("no other fields")
    elif isinstance(extra, dict):
        out.append(f"any keys, values {type_of(root, extra)}")
    if node.get("type") == "array" and "items" in node:
        out += [
            f"items: {c}" for c in constraints_of(root, node["items"]) if c != "no other fields"
        ]
    return out


def _range(node: Schema, low: str, high: str, unit: str) -> list[str]:
    lo, hi = node.get(low), node.get(high)
    if lo is not None and hi is not None:
        return [f"{lo} to {hi} {unit}"]
    if lo is not None:
        return [f"at least {lo} {unit}"]
    if hi is not None:
        return [f"at most {hi} {unit}"]
    return []


def walk(root: Schema, node: Schema, topic: str, prefix: str = "") -> Iterator[Row]:
    """One row per property of the object schema ``node``, depth first, nested objects included."""
    node = resolve(root, node)
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        child = resolve(root, child)
        path = f"{prefix}{name}"
        yield Row(
            path=path,
            type=type_of(root, child),
            required=name in required,
            meaning=meaning(topic, path, child),
            constraints="; ".join(constraints_of(root, child)),
        )
        if "properties" in child:
            yield from walk(root, child, topic, f"{path}.")
        items = child.get("items")
        if isinstance(items, dict) and "properties" in resolve(root, items):
            yield from walk(root, items, topic, f"{path}[].")


# (topic, path) of the MEANINGS entries used by a render, to find stale ones.
USED_MEANINGS: set[tuple[str, str]] = set()


def meaning(topic: str, path: str, node: Schema) -> str:
    text = MEANINGS.get(topic, {}).get(path) or node.get("description")
    if not text:
        raise KeyError(
            f"no meaning for {topic} field {path!r}: add it to MEANINGS in {Path(__file__).name}"
        )
    if path in MEANINGS.get(topic, {}):
        USED_MEANINGS.add((topic, path))
    return str(text)


def table(rows: list[Row]) -> str:
    lines = ["| field | type | required | meaning | constraints |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [
            f"`{r.path}`",
            r.type,
            "yes" if r.required else "no",
            r.meaning,
            r.constraints or "—",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def clickstream_types() -> list[str]:
    """The event types of the clickstream schema, in schema order."""
    envelope = pointer(load_schema("clickstream"), "/$defs/envelope")
    return list(envelope["properties"]["type"]["enum"])


def field_rows(spec: str) -> tuple[str, list[Row]]:
    """``(topic, rows)`` of a ``fields`` or ``type`` spec."""
    kind, *args = spec.split()
    if kind == "fields":
        topic, ptr, *rest = args
        root = load_schema(topic)
        node = root if ptr == "#" else pointer(root, ptr.removeprefix("#"))
        return topic, list(walk(root, node, topic, rest[0] if rest else ""))
    if kind == "type":
        (event_type,) = args
        root = load_schema("clickstream")
        definition = pointer(root, f"/$defs/{event_type}")
        props = resolve(
            root, definition.get("properties", {}).get("properties", {"type": "object"})
        )
        head = Row(
            path="properties",
            type="object",
            required="properties" in definition.get("required", []),
            meaning=f"Fields of the `{event_type}` event.",
            constraints="; ".join(constraints_of(root, props)),
        )
        return "clickstream", [head, *walk(root, props, "clickstream", "properties.")]
    raise ValueError(f"not a field table: {spec!r}")


def render_spec(spec: str) -> str:
    """The generated text for one marker spec."""
    kind, *args = spec.split()
    if kind == "summary":
        (topic,) = args
        schema = load_schema(topic)
        version = _schema_version(schema)
        return (
            f"**Schema:** [`schemas/{topic}.v1.json`](../schemas/{topic}.v1.json), "
            f"`schema_version` **{version}**.\n\n> {schema['description']}\n"
        )
    if kind in ("fields", "type"):
        return table(field_rows(spec)[1]) + "\n"
    if kind == "example":
        (ref,) = args
        topic, name = ref.split("/")
        path = EXAMPLES / topic / f"{name}.json"
        text = path.read_text().rstrip("\n")
        return f"`schemas/examples/{topic}/{name}.json`:\n\n```json\n{text}\n```\n"
    raise ValueError(f"unknown generated block {spec!r}")


def _schema_version(schema: Schema) -> int:
    props = schema.get("properties") or pointer(schema, "/$defs/envelope")["properties"]
    return int(props["schema_version"]["const"])


def render(text: str) -> str:
    """``text`` with every generated block regenerated."""
    return MARKER.sub(
        lambda m: m.group(1) + "\n" + render_spec(m.group("spec")) + "\n" + m.group(4), text
    )


def specs(text: str) -> list[str]:
    """The specs of the generated blocks of ``text``, in order."""
    return [m.group("spec") for m in MARKER.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if docs/events.md is out of date"
    )
    args = parser.parse_args(argv)
    current = EVENTS_MD.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(
                f"{EVENTS_MD.relative_to(ROOT)} is out of date: run python docs/build_events_md.py"
            )
            return 1
        return 0
    if fresh != current:
        EVENTS_MD.write_text(fresh)
        print(f"updated {EVENTS_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
