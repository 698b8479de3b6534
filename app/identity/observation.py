"""Observations: what one input record says about identity, normalised and hashed at the edge.

An :class:`Observation` is built from a ``crm-profiles`` record
(:func:`observe_crm`) or a ``clickstream`` event (:func:`observe_event`; the
``identify`` event's ``traits`` add matching traits). From here on nothing is in
clear except the normalised names, dates and address used for fuzzy matching.

Examples
--------
>>> from app.identity.config import ResolverConfig
>>> from app.identity.hashing import IdentifierHasher
>>> h, cfg = IdentifierHasher("a-secret-of-16-chars"), ResolverConfig()
>>> obs = observe_crm({"schema_version": 1, "record_id": "r1", "source": "crm",
...     "traits": {"first_name": "Ann", "email": "ANN@example.com", "phone": "test"}}, h, cfg)
>>> obs.key_type, [t for t, _ in obs.identifiers], obs.traits["first_name"]
('crm_record_id', ['crm_record_id', 'email'], 'ann')
>>> "ANN@example.com" in repr(obs) or "ann@example.com" in repr(obs)
False
>>> observe_crm({"record_id": "r1"}, h, cfg)
Traceback (most recent call last):
...
app.identity.observation.InvalidRecordError: crm record: 'source' must be a non-empty string
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import PersonaError
from app.identity.config import ResolverConfig
from app.identity.hashing import IDENTIFIER_TYPES, IdentifierHasher
from app.identity.normalise import (
    normalise_date,
    normalise_email,
    normalise_id,
    normalise_loyalty_id,
    normalise_name,
    normalise_phone,
    normalise_postcode,
    normalise_street,
)

_TYPE_RANK = {t: i for i, t in enumerate(IDENTIFIER_TYPES)}

#: Matching-record fields held in clear (normalised) for fuzzy comparison, and their normaliser.
CLEAR_FIELDS: dict[str, Callable[[str | None], str | None]] = {
    "first_name": normalise_name,
    "last_name": normalise_name,
    "date_of_birth": normalise_date,
    "street": normalise_street,
    "address_line_2": normalise_street,
    "city": normalise_name,
    "postcode": normalise_postcode,
    "state": normalise_name,
}


class InvalidRecordError(PersonaError, ValueError):
    """An input record cannot be read as a crm record or clickstream event; the message says why."""


@dataclass(frozen=True)
class Observation:
    """Identity content of one input record.

    Attributes
    ----------
    key
        Hash of the record's primary identifier (CRM record id; an event's user id,
        else its anonymous id). The matching record is stored under it.
    key_type
        Type of ``key``.
    identifiers
        ``(type, hash)`` pairs, ``key`` first, then strongest type first, no junk.
    traits
        The matching record (see :mod:`app.identity.state`); may be empty.
    user_hashes
        Hashes of the user ids on the record (for shared-device detection).
    junk
        ``(type, hash)`` of identifiers dropped as junk (reported as ``refused``).
    source
        A stable id of the input, the basis of change ids.
    at
        The record's own time (RFC 3339), when it has one.
    """

    key: str | None
    key_type: str | None
    identifiers: tuple[tuple[str, str], ...]
    traits: dict[str, Any] = field(default_factory=dict)
    user_hashes: tuple[str, ...] = ()
    junk: tuple[tuple[str, str], ...] = ()
    source: str = ""
    at: str | None = None


class _Builder:
    def __init__(self, hasher: IdentifierHasher, config: ResolverConfig) -> None:
        self.hasher = hasher
        self.config = config
        self.ids: dict[str, str] = {}
        self.junk: dict[str, str] = {}
        self.traits: dict[str, Any] = {}

    def identifier(self, id_type: str, value: str | None) -> str | None:
        if value is None:
            return None
        digest = self.hasher.identifier(id_type, value)
        if self.config.blocklist.is_junk(id_type, value):
            self.junk.setdefault(digest, id_type)
            return None
        self.ids.setdefault(digest, id_type)
        return digest

    def add_traits(self, raw: Mapping[str, Any]) -> None:
        blocklist = self.config.blocklist
        for name, normalise in CLEAR_FIELDS.items():
            raw_value = raw.get(name)
            if not isinstance(raw_value, str):
                continue
            value = normalise(raw_value)
            if value is not None and not blocklist.is_junk(name, value):
                self.traits[name] = value
        country = raw.get("country")
        region = (
            country
            if isinstance(country, str) and len(country) == 2
            else self.config.default_region
        )
        email = self.identifier("email", normalise_email(_str(raw.get("email"))))
        if email:
            self.traits["email"] = email
        phone = self.identifier("phone", normalise_phone(_str(raw.get("phone")), region.upper()))
        if phone:
            self.traits["phone"] = phone
        loyalty = normalise_loyalty_id(_str(raw.get("loyalty_id")))
        digest = self.identifier("loyalty_id", loyalty)
        if digest and loyalty:
            self.traits["loyalty_id"] = [digest, *self.hasher.near_hashes("loyalty_id", loyalty)]
        self.identifier("user_id", normalise_id(_str(raw.get("user_id"))))

    def build(self, key_types: tuple[str, ...], source: str, at: str | None) -> Observation:
        # Runs once per clickstream event (ingest): plain loops over the two or three
        # identifiers, no sort key closures, no sort of what has one element.
        ids = self.ids
        first: dict[str, str] = {}  # type -> the first hash of that type
        for digest, id_type in ids.items():
            first.setdefault(id_type, digest)
        key = None
        for id_type in key_types:
            if id_type in first:
                key = first[id_type]
                break
        # The key first, then strongest type first; hashes are unique, so the type never decides.
        rest = sorted([(_TYPE_RANK.get(t, 99), h, t) for h, t in ids.items() if h != key])
        identifiers = [(t, h) for _, h, t in rest]
        if key is not None:
            identifiers.insert(0, (ids[key], key))
        users = [h for h, t in ids.items() if t == "user_id"]
        if len(users) > 1:
            users.sort()
        return Observation(
            key=key,
            key_type=ids[key] if key is not None else None,
            identifiers=tuple(identifiers),
            traits=self.traits,
            user_hashes=tuple(users),
            junk=tuple(sorted([(t, h) for h, t in self.junk.items()])) if self.junk else (),
            source=source,
            at=at,
        )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def observe_crm(record: Any, hasher: IdentifierHasher, config: ResolverConfig) -> Observation:
    """The observation of a ``crm-profiles`` record (schema ``crm-profiles.v1``).

    Raises
    ------
    InvalidRecordError
        When the record lacks ``record_id``, ``source`` or a ``traits`` object.
    """
    if not isinstance(record, Mapping):
        raise InvalidRecordError("crm record: expected a JSON object")
    record_id, source = record.get("record_id"), record.get("source")
    if not isinstance(record_id, str) or not record_id.strip():
        raise InvalidRecordError("crm record: 'record_id' must be a non-empty string")
    if not isinstance(source, str) or not source.strip():
        raise InvalidRecordError("crm record: 'source' must be a non-empty string")
    traits = record.get("traits")
    if not isinstance(traits, Mapping):
        raise InvalidRecordError("crm record: 'traits' must be an object")
    builder = _Builder(hasher, config)
    builder.identifier("crm_record_id", crm_record_value(source, record_id))
    builder.add_traits(traits)
    updated = record.get("updated_at")
    return builder.build(("crm_record_id",), f"crm/{source}/{record_id}", _str(updated))


def crm_record_value(source: str, record_id: str) -> str:
    """The normalised value of a CRM record's identifier (``source/record_id``)."""
    return f"{source.strip()}/{record_id.strip()}"


def observe_event(event: Any, hasher: IdentifierHasher, config: ResolverConfig) -> Observation:
    """The observation of a ``clickstream`` event: anonymous, user and device id, identify traits.

    Raises
    ------
    InvalidRecordError
        When the event has no ``anonymous_id`` or ``event_id``.
    """
    if not isinstance(event, Mapping):
        raise InvalidRecordError("event: expected a JSON object")
    anonymous_id, event_id = event.get("anonymous_id"), event.get("event_id")
    if not isinstance(anonymous_id, str) or not anonymous_id:
        raise InvalidRecordError("event: 'anonymous_id' must be a non-empty string")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidRecordError("event: 'event_id' must be a non-empty string")
    builder = _Builder(hasher, config)
    builder.identifier("user_id", normalise_id(_str(event.get("user_id"))))
    builder.identifier("anonymous_id", normalise_id(anonymous_id))
    context = event.get("context")
    device = context.get("device") if isinstance(context, Mapping) else None
    if isinstance(device, Mapping):
        builder.identifier("device_id", normalise_id(_str(device.get("id"))))
    if event.get("type") == "identify":
        props = event.get("properties")
        traits = props.get("traits") if isinstance(props, Mapping) else None
        if isinstance(traits, Mapping):
            builder.add_traits(traits)
    return builder.build(
        ("user_id", "anonymous_id", "device_id"), f"event/{event_id}", _str(event.get("timestamp"))
    )
