"""The ingest stage's fold of one batch of ``clickstream`` records, as a pure step.

The agent (agents/ingest.py) takes records in batches and hands them here with a read-only
view of the activity table and of the alias table; :func:`fold` returns everything the batch
does, and the agent carries it out in this order:

1. send the dead letters of :attr:`IngestBatch.rejected` (each holds the watermark until
   acknowledged), the identity forwards of :attr:`IngestBatch.forwards` and the packs of
   :attr:`IngestBatch.to_profiles`;
2. wait for **every** identity forward's and pack's acknowledgement: the states of ``pending``
   remember what was forwarded, and a state's offset says its events reached the profiles
   stage, so they may be written only once the broker has them all (a crash before that
   applies the records again: forwards again, which the resolver absorbs, and sends the
   events again, which the profiles stage drops by event id);
3. write :attr:`IngestBatch.pending`, each changed anonymous id **once**;
4. move the watermark once per partition (:attr:`IngestBatch.last_offsets`);
5. serve :attr:`IngestBatch.served` to Redis.

States chain through ``pending`` exactly as they would through the table, so a batch gives the
states and outputs of the same records applied one by one. Every event stands at its own
source position (app/events/positions.py), which its state compares: a replayed record changes
nothing and is not sent to the profiles stage again, since its state was written only after
the profiles stage's pack was acknowledged (step 2). Sending replays again over-counted
profiles after kills: a replay longer than a profile's window of recent event ids, or one
reaching a merge survivor before the absorbed side's ids, counted twice.

Examples
--------
>>> from app.events.validation import Validator
>>> from app.identity import IdentityResolver
>>> doc = {"schema_version": 1, "event_id": "e-1", "type": "page_view", "anonymous_id": "anon-1",
...        "timestamp": "2026-01-01T00:00:00Z", "context": {"page": {"url": "https://shop.example/"}}}
>>> records = [Source(orjson.dumps(doc), 0, 7, 1767225600.0), Source(b"not json", 0, 8, 1767225600.0)]
>>> batch = fold(records, {}, {}, Validator(), IdentityResolver("a-secret-of-16-chars"), now=1767225600.0)
>>> len(batch.pending), batch.processed, [r.rejection.code for r in batch.rejected], batch.last_offsets
(1, Counter({'page_view': 1}), ['invalid_json'], {0: (8, 2)})
>>> [partition for _, partition in batch.forwards], len(batch.to_profiles)   # a first event is new identity information
([0], 1)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from app.events.positions import position
from app.events.validation import Event, Item, Rejection, Validator, parse_timestamp, processing_error
from app.identity.hashing import profile_id_for
from app.identity.observation import InvalidRecordError, Observation
from app.identity.resolver import IdentityResolver
from app.identity.stream import forward_decision, observation_to_dict
from app.ingest import activity
from app.profiles import unified as profile
from tables.hooks import State


class Source(NamedTuple):
    """One clickstream record: its bytes and where (and when) the broker has it."""

    value: bytes
    partition: int
    offset: int
    #: The record's Kafka timestamp (epoch seconds): the start of its end-to-end latency.
    timestamp: float


class Refused(NamedTuple):
    """A refused record, or a refused event of a batch record: what its dead letter says."""

    #: Index of its record in the batch.
    record: int
    rejection: Rejection
    #: Index of the event in a batch record's ``events`` (``None``: the whole record).
    batch_index: int | None
    #: The bytes the dead letter holds when not the record's own: the refused event's document.
    raw: bytes | None


@dataclass
class IngestBatch:
    """Everything one batch does (see the module docstring for the order it is carried out in)."""

    #: anonymous id hash -> (newest state, its source partition); each written once.
    pending: dict[str, tuple[State, int]] = field(default_factory=dict)
    #: anonymous id hash -> (state, profile id) to put into Redis.
    served: dict[str, tuple[State, str]] = field(default_factory=dict)
    #: (profile id, its profile-events record) of every applied event, in offset order.
    to_profiles: list[tuple[str, bytes]] = field(default_factory=list)
    #: (observation, source partition) of the events that carry new identity information, in order.
    forwards: list[tuple[Observation, int]] = field(default_factory=list)
    rejected: list[Refused] = field(default_factory=list)
    processed: Counter[str] = field(default_factory=Counter)  # event type -> applied
    duplicates: Counter[str] = field(default_factory=Counter)  # kind: offset (a replay) / event_id (a retry)
    #: partition -> (last offset, records) of the batch.
    last_offsets: dict[int, tuple[int, int]] = field(default_factory=dict)


def fold(
    records: Sequence[Source],
    table: Mapping[str, State],
    aliases: Mapping[str, Any],
    validator: Validator,
    resolver: IdentityResolver,
    now: float,
    dedup_window: int = activity.DEFAULT_DEDUP_WINDOW,
) -> IngestBatch:
    """Validate and apply a batch of clickstream records in offset order (``table`` is only read).

    ``aliases`` is the alias table (anonymous id hash -> ``{"profile_id": ...}``) that names an
    event's profile once identity has resolved it; ``now`` is the wall clock the validator
    judges event times against.
    """
    batch = IngestBatch()
    pending = batch.pending
    ids = resolver.hasher.memoising()  # the batch's identifier hashes, each computed once
    for index, record in enumerate(records):
        # A record is one event or a publisher's batch of one visitor's events: each event is
        # validated, applied and dead-lettered on its own, at its own source position.
        try:
            items = list(validator.clickstream_items(record.value, now=now))
        except Exception as exc:  # the validator's own failure: the record goes, the stage goes on
            batch.rejected.append(Refused(index, processing_error("ingest", exc), None, None))
            items = []
        for item in items:
            result = item.result
            if isinstance(result, Rejection):
                batch.rejected.append(Refused(index, result, item.batch_index, item_bytes(item)))
                continue
            # Everything an event does is worked out before any of it is kept: an event whose
            # processing raises leaves the batch as it was, and is dead-lettered alone.
            try:
                step = _event_step(result, record, item.batch_index or 0, pending, table, aliases, resolver, ids,
                                   dedup_window)
            except Exception as exc:
                batch.rejected.append(Refused(index, processing_error("ingest", exc), item.batch_index,
                                              item_bytes(item)))
                continue
            step.keep(batch, record.partition, result.type)
        _, count = batch.last_offsets.get(record.partition, (0, 0))
        batch.last_offsets[record.partition] = (record.offset, count + 1)
    return batch


class _Step(NamedTuple):
    """What one valid event does to a batch, worked out before any of it is kept."""

    outcome: str
    key: str
    state: State
    forward: Observation | None
    profile_id: str
    to_profiles: bytes

    def keep(self, batch: IngestBatch, partition: int, event_type: str) -> None:
        if self.outcome == "replayed":  # its state was written after its pack's acknowledgement: sent already
            batch.duplicates["offset"] += 1
            return
        batch.pending[self.key] = (self.state, partition)
        if self.outcome == "applied":
            if self.forward is not None:
                batch.forwards.append((self.forward, partition))
            batch.processed[event_type] += 1
            batch.served[self.key] = (self.state, self.profile_id)
            batch.to_profiles.append((self.profile_id, self.to_profiles))
        else:
            batch.duplicates["event_id"] += 1


def _event_step(
    event: Event, record: Source, batch_index: int, pending: Mapping[str, tuple[State, int]],
    table: Mapping[str, State], aliases: Mapping[str, Any], resolver: IdentityResolver, ids: Any, dedup_window: int,
) -> _Step:
    key = ids.identifier("anonymous_id", event.anonymous_id)
    before = pending[key][0] if key in pending else table.get(key)
    state, outcome = activity.apply(
        before, event.type, event.event_id, event.ts, position(record.offset, batch_index), dedup_window,
    )
    if outcome not in ("replayed", "applied"):
        return _Step(outcome, key, state, None, "", b"")
    obs = resolver.observe_event(event.data, ids)
    forward = None
    if outcome == "applied":
        seen, wanted = forward_decision(state.get("identity_seen"), obs, resolver.hasher)
        if wanted:
            forward = obs
            state = {**state, "identity_seen": seen}
    profile_id = current_profile(obs, aliases)
    return _Step(outcome, key, state, forward, profile_id, profile_record(event, profile_id, record.timestamp))


def profile_record(event: Event, profile_id: str, produced_at: float) -> bytes:
    """A valid event stamped with its profile: the profiles stage's record of it.

    ``produced_at`` is the clickstream record's Kafka timestamp: the profiles stage measures
    the end-to-end latency from it.
    """
    return orjson.dumps({"profile_id": profile_id, "ts": event.ts, "event": event.data, "produced_at": produced_at})


def anonymous_hash(obs: Observation) -> str | None:
    # A loop, not next() over a generator: this runs once or twice per event.
    for id_type, digest in obs.identifiers:
        if id_type == "anonymous_id":
            return digest
    return None


def current_profile(obs: Observation, aliases: Mapping[str, Any]) -> str:
    """The event's profile now: its alias (co-partitioned table), else the id its own profile would get."""
    anon = anonymous_hash(obs) or ""
    alias = aliases.get(anon)
    return str(alias["profile_id"]) if alias else profile_id_for(anon)


def item_bytes(item: Item) -> bytes | None:
    """The bytes a dead letter of ``item`` holds: its own document for an event of a batch (else the record's).

    A document orjson reads but cannot write back (nested deeper than its writer's limit) is
    dead-lettered with its whole record's bytes instead: a dead letter must never fail.

    >>> deep = orjson.loads(b"[" * 300 + b"]" * 300)
    >>> refused = Rejection("schema_violation", "x")
    >>> item_bytes(Item(0, refused, {"a": 1})), item_bytes(Item(0, refused, deep))
    (b'{"a":1}', None)
    """
    if item.batch_index is None:
        return None
    try:
        return orjson.dumps(item.doc)
    except orjson.JSONEncodeError:
        return None


def crm_forward(
    raw: bytes, received: float, validator: Validator, resolver: IdentityResolver
) -> tuple[bytes, bytes] | Rejection:
    """The identity-input record ``(key, value)`` of a ``crm-profiles`` record, or why it is dead-lettered.

    Every valid CRM record goes to identity, hashed here, with the traits the profile keeps
    banded here, so no date of birth travels on (app/profiles/unified.py). A record the code fails
    on is a ``processing_error``: dead-lettered, and ingest-crm goes on.

    >>> from app.events.validation import Validator
    >>> from app.identity import IdentityResolver
    >>> doc = {"schema_version": 1, "record_id": "r1", "source": "crm", "traits": {"first_name": "Ann"}}
    >>> key, value = crm_forward(orjson.dumps(doc), 0.0, Validator(), IdentityResolver("a-secret-of-16-chars"))
    >>> sorted(orjson.loads(value))
    ['obs', 'traits', 'ts']
    """
    try:
        result = validator.crm_record(raw)
        if isinstance(result, Rejection):
            return result
        obs = resolver.observe_crm(result.data)
        ts = crm_time(result.data, received)
        bands = profile.trait_bands(result.data.get("traits") or {}, ts)
        doc = {"obs": observation_to_dict(obs), "traits": bands, "ts": ts}
        return obs.source.encode(), orjson.dumps(doc)
    except InvalidRecordError as exc:  # the schema allows what the resolver cannot use (a blank record_id)
        return Rejection("schema_violation", str(exc))
    except Exception as exc:
        return processing_error("ingest", exc)


def crm_time(data: dict[str, Any], received: float) -> float:
    """When a CRM record's traits were true: its ``updated_at``, else when the broker received it
    (stable across replays, so the traits' last-writer-wins order is too)."""
    updated = data.get("updated_at")
    parsed = parse_timestamp(updated) if isinstance(updated, str) else None
    return parsed if parsed is not None else received
