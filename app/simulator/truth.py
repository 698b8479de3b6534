"""Ground truth of a run, written beside its output for evaluating the pipeline.

:class:`TruthWriter` watches the records as they go out and writes, into one
directory, JSON Lines files that say what really happened:

``events.jsonl``
    Per valid clickstream record: ``event_id``, ``customer_id``, ``anonymous_id``,
    ``session_id``, ``type``, ``timestamp`` and ``duplicate`` (true on a
    publisher-retry copy, which repeats its original's ``event_id``).
``sessions.jsonl``
    Per true session: ``session_id``, ``customer_id``, ``anonymous_id``,
    ``start``, ``end``, ``n_events`` (retry copies not counted).
``crm.jsonl``
    Per valid CRM record: ``record_id``, ``customer_id``, ``source``, ``updated_at``.
``malformed.jsonl``
    Per malformed record: ``topic``, ``key``, ``expected_reason``,
    ``customer_id``, ``topic_position`` (0-based index among the records sent to
    that topic: the offset on a fresh single-partition topic) and
    ``value_sha256`` (to match the payload of a dead letter).
``customers.jsonl``
    Per customer, written on :meth:`TruthWriter.close`: ``customer_id``,
    ``archetype``, the true ``email`` (canonical), ``phone`` (E.164),
    ``loyalty_id``, ``user_id``, names, date of birth and address, the
    ``device_ids`` and the ``anonymous_ids`` seen in the run, and counts.

Examples
--------
>>> import json, tempfile, pathlib
>>> from datetime import datetime, UTC
>>> from app.simulator.config import SimConfig
>>> from app.simulator.generator import iter_records
>>> config = SimConfig(seed=5, customers=10, end=datetime(2024, 3, 1, tzinfo=UTC), max_events=300)
>>> with tempfile.TemporaryDirectory() as tmp:
...     with TruthWriter(tmp, config) as truth:
...         n = sum(1 for _ in truth.tee(iter_records(config)))
...     sorted(p.name for p in pathlib.Path(tmp).iterdir())
...     first = json.loads((pathlib.Path(tmp) / "customers.jsonl").read_text().splitlines()[0])
['crm.jsonl', 'customers.jsonl', 'events.jsonl', 'malformed.jsonl', 'sessions.jsonl']
>>> first["customer_id"], first["email"] == first["email"].lower()
('cust-000001', True)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from app.simulator.config import SimConfig
from app.simulator.population import build_population
from app.simulator.record import SimRecord

_BUFFER = 1 << 20


class _Seen:
    """What the records revealed about one customer."""

    __slots__ = ("anonymous_ids", "archetype", "crm_records", "device_ids", "events", "sessions",
                 "user_ids")

    def __init__(self, archetype: str | None) -> None:
        self.archetype = archetype
        self.anonymous_ids: dict[str, None] = {}  # insertion-ordered set
        self.device_ids: dict[str, None] = {}
        self.user_ids: dict[str, None] = {}
        self.events = 0
        self.sessions = 0
        self.crm_records = 0


class TruthWriter:
    """Writes the ground truth of the records passed to :meth:`write` into ``directory``.

    Parameters
    ----------
    directory : path-like
        Created if missing; the five files in it are replaced.
    config : SimConfig or None
        The config the records were generated from. With it, ``customers.jsonl``
        lists every customer with their true identifiers (the population is
        rebuilt from the config); without it, only what the records showed.
    """

    def __init__(self, directory: str | os.PathLike[str], config: SimConfig | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        # The files stay open for the life of the writer; close() closes them all.
        self._stack = contextlib.ExitStack()
        self._files: dict[str, IO[bytes]] = {
            name: self._stack.enter_context(
                open(self.directory / f"{name}.jsonl", "wb", buffering=_BUFFER)  # noqa: SIM115
            )
            for name in ("events", "sessions", "crm", "malformed")
        }
        self._events = self._files["events"].write
        self._open_sessions: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, _Seen] = {}
        self._positions: dict[str, int] = {}
        self._closed = False

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def tee(self, records: Iterable[SimRecord]) -> Iterator[SimRecord]:
        """Yield ``records`` unchanged, writing the truth of each as it passes."""
        write = self.write
        for record in records:
            write(record)
            yield record

    def _customer(self, truth: dict[str, Any]) -> _Seen:
        customer_id = truth["customer_id"]
        seen = self._seen.get(customer_id)
        if seen is None:
            seen = self._seen[customer_id] = _Seen(truth.get("archetype"))
        return seen

    def write(self, record: SimRecord) -> None:
        """Record the truth of one record (records without truth only advance positions)."""
        position = self._positions.get(record.topic, 0)
        self._positions[record.topic] = position + 1
        truth = record.truth
        if truth is None:
            return
        if "expected_reason" in truth:
            self._files["malformed"].write(orjson.dumps({
                "topic": record.topic,
                "key": record.key.decode("utf-8", "backslashreplace"),
                "expected_reason": truth["expected_reason"],
                "customer_id": truth.get("customer_id"),
                "topic_position": position,
                "value_sha256": hashlib.sha256(record.value).hexdigest(),
            }) + b"\n")
        elif "session_id" in truth:
            self._event(record, truth)
        else:
            doc = orjson.loads(record.value)
            self._customer(truth).crm_records += 1
            self._files["crm"].write(orjson.dumps({
                "record_id": doc["record_id"], "customer_id": truth["customer_id"],
                "source": doc["source"], "updated_at": doc.get("updated_at"),
            }) + b"\n")

    def _event(self, record: SimRecord, truth: dict[str, Any]) -> None:
        doc = orjson.loads(record.value)
        customer_id = truth["customer_id"]
        session_id = truth["session_id"]
        anonymous_id = doc["anonymous_id"]
        timestamp = doc["timestamp"]
        duplicate = "duplicate_of" in truth
        self._events(orjson.dumps({
            "event_id": doc["event_id"], "customer_id": customer_id, "anonymous_id": anonymous_id,
            "session_id": session_id, "type": doc["type"], "timestamp": timestamp,
            "duplicate": duplicate,
        }) + b"\n")
        if duplicate:
            return
        seen = self._customer(truth)
        seen.events += 1
        seen.anonymous_ids[anonymous_id] = None
        device_id = doc.get("context", {}).get("device", {}).get("id")
        if device_id:
            seen.device_ids[device_id] = None
        user_id = doc.get("user_id")
        if user_id:
            seen.user_ids[user_id] = None
        session = self._open_sessions.get(customer_id)
        if session is None or session["session_id"] != session_id:
            if session is not None:
                self._write_session(session)
            seen.sessions += 1
            self._open_sessions[customer_id] = {
                "session_id": session_id, "customer_id": customer_id, "anonymous_id": anonymous_id,
                "start": timestamp, "end": timestamp, "n_events": 1,
            }
        else:
            session["end"] = timestamp
            session["n_events"] += 1

    def _write_session(self, session: dict[str, Any]) -> None:
        self._files["sessions"].write(orjson.dumps(session) + b"\n")

    def close(self) -> None:
        """Write the open sessions and ``customers.jsonl``; close every file."""
        if self._closed:
            return
        self._closed = True
        try:
            for session in self._open_sessions.values():
                self._write_session(session)
            self._open_sessions.clear()
            with open(self.directory / "customers.jsonl", "wb", buffering=_BUFFER) as out:
                for line in self._customer_lines():
                    out.write(orjson.dumps(line) + b"\n")
        finally:
            self._stack.close()

    def _customer_lines(self) -> Iterator[dict[str, Any]]:
        if self.config is None:
            for customer_id, seen in self._seen.items():
                yield {
                    "customer_id": customer_id, "archetype": seen.archetype,
                    "user_id": next(iter(seen.user_ids), None),
                    "device_ids": list(seen.device_ids), "anonymous_ids": list(seen.anonymous_ids),
                    "n_events": seen.events, "n_sessions": seen.sessions,
                    "n_crm_records": seen.crm_records,
                }
            return
        for customer in build_population(self.config):
            person = customer.person
            seen = self._seen.get(customer.customer_id) or _Seen(customer.archetype.name)
            registered = not customer.has_account and person.user_id in seen.user_ids
            address = person.address
            yield {
                "customer_id": customer.customer_id,
                "archetype": customer.archetype.name,
                "user_id": person.user_id if customer.has_account or registered else None,
                "registered_during_period": registered,
                "email": person.email,
                "phone": person.phone,
                "loyalty_id": person.loyalty_id,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "date_of_birth": person.date_of_birth,
                "address": {"street": address.street, "city": address.city,
                            "postcode": address.postcode, "country": address.country},
                "device_ids": [d.device_id for d in customer.devices],
                "anonymous_ids": list(seen.anonymous_ids),
                "favourite_categories": list(customer.favourite_categories),
                "n_events": seen.events,
                "n_sessions": seen.sessions,
                "n_crm_records": seen.crm_records,
            }
