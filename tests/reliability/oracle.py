"""The oracle of the fault test: the same input through an uninterrupted pure fold, compared with the tables.

What compares exactly, and why:

- **activity** (per anonymous id): ingest's fold (``app/ingest/fold.py``, the agent's
  own) over every clickstream record in offset order per partition gives each anonymous id's
  event count, counts by type, first/last seen, last offset and the window of recent event
  ids. None of that depends on timing (batch cuts, ticks, when aliases arrive), so the table
  read back from its changelog must equal it: a lost event shows as a count too low, one
  applied twice as a count too high (and a different ``recent_ids``).
- **profiles** (per profile): which profile an event lands on depends on when identity
  resolved its visitor, but every applied event lands on exactly one profile and merges sum
  counts, so per final profile (an anonymous id's alias, followed through merges) the
  profile's ``events`` must equal the sum of its visitors' activity events, and the total
  over live profiles the total of applied events.
- **Redis**: every serving key of the activity and identity-lookup families must equal what
  the tables serve (``app/runtime/rebuild.py`` ``serving_keys``: the same functions the agents use),
  an activity hash's ``profile_id`` counted apart (ingest stamps it at its last write of the
  key: an alias that came later shows at the visitor's next event); profile hashes hold
  features decayed to the time they were written, so only their event count is compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from tables.hooks import State

#: The activity value's fields an uninterrupted fold determines exactly.
EXACT_ACTIVITY_FIELDS = ("counts", "events", "first_seen", "last_seen", "offset", "recent_ids")


class TopicRecord(NamedTuple):
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    value: bytes | None


async def read_topic(bootstrap: str, topic: str, idle_ms: int = 3000) -> list[TopicRecord]:
    """Every record of ``topic``, all partitions, until a poll of ``idle_ms`` finds nothing more."""
    from aiokafka import AIOKafkaConsumer

    from app.runtime.rebuild import topic_partitions

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[TopicRecord] = []
        while batch := await consumer.getmany(*tps, timeout_ms=idle_ms, max_records=10_000):
            for messages in batch.values():
                out.extend(TopicRecord(m.partition, m.offset, m.timestamp / 1000, m.key, m.value) for m in messages)
        return out
    finally:
        await consumer.stop()


def read_topic_sync(bootstrap: str, topic: str) -> list[TopicRecord]:
    return asyncio.run(read_topic(bootstrap, topic))


def activity_oracle(records: Iterable[TopicRecord], now: float, batch: int = 500) -> dict[str, State]:
    """The activity table an uninterrupted run of ingest's fold makes of ``records`` (clickstream)."""
    from agents import ingest
    from app.ingest import fold as activity_batch

    table: dict[str, State] = {}
    by_partition: dict[int, list[TopicRecord]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r)
    for partition, recs in sorted(by_partition.items()):
        recs.sort(key=lambda r: r.offset)
        sources = [activity_batch.Source(r.value or b"", partition, r.offset, r.timestamp) for r in recs]
        for start in range(0, len(sources), batch):
            folded = activity_batch.fold(sources[start:start + batch], table, {}, ingest.validator, ingest.resolver,
                                         now, ingest.settings.dedup_window)
            table.update({key: state for key, (state, _) in folded.pending.items()})
    return table


def exact(value: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an activity value that must match the oracle.

    >>> exact({"counts": {"a": 1}, "events": 1, "first_seen": 1.0, "last_seen": 1.0, "offset": 4,
    ...        "recent_ids": "x", "identity_seen": ["k"]})["offset"]
    4
    """
    return {f: value.get(f) for f in EXACT_ACTIVITY_FIELDS}


def compare_activity(table: Mapping[str, State], oracle: Mapping[str, State]) -> dict[str, Any]:
    """Lost and extra (applied twice, or never sent) events per anonymous id, and other differences.

    >>> o = {"a": {"events": 2, "offset": 5}, "b": {"events": 1, "offset": 3}}
    >>> t = {"a": {"events": 3, "offset": 5}, "c": {"events": 1, "offset": 1}}
    >>> r = compare_activity(t, o)
    >>> r["lost_events"], r["applied_twice"], r["missing_ids"], r["unexpected_ids"], r["differing_ids"]
    (1, 2, 1, 1, 1)
    """
    lost = twice = differing = 0
    examples: list[dict[str, Any]] = []
    for key in sorted(set(table) | set(oracle)):
        want, got = oracle.get(key), table.get(key)
        n_want, n_got = (want or {}).get("events", 0), (got or {}).get("events", 0)
        lost += max(0, n_want - n_got)
        twice += max(0, n_got - n_want)
        if want is not None and got is not None and exact(want) != exact(got):
            differing += 1
            if len(examples) < 5:
                examples.append({"key": key, "table": exact(got), "oracle": exact(want)})
    return {"ids": len(oracle), "events": sum(v["events"] for v in oracle.values()), "lost_events": lost,
            "applied_twice": twice, "missing_ids": len(set(oracle) - set(table)),
            "unexpected_ids": len(set(table) - set(oracle)), "differing_ids": differing, "examples": examples}


def lost_event_records(records: Iterable[TopicRecord], table: Mapping[str, State],
                       oracle: Mapping[str, State], limit: int = 40) -> list[dict[str, Any]]:
    """Where the events an id lost were in the input: partition, offset, broker timestamp.

    Only events still among the oracle's recent ids can be named (a state keeps the digests of
    its last ``dedup_window`` events): those the oracle holds for an id and the table does not.

    >>> from app.events import dedupe
    >>> rec = TopicRecord(0, 7, 1.5, None, b'{"event_id": "e-2", "anonymous_id": "a"}')
    >>> oracle = {"k": {"events": 2, "recent_ids": dedupe.digest("e-1") + dedupe.digest("e-2")}}
    >>> lost_event_records([rec], {"k": {"events": 1, "recent_ids": dedupe.digest("e-1")}}, oracle)
    [{'partition': 0, 'offset': 7, 'timestamp': 1.5, 'event_id': 'e-2'}]
    """
    import orjson

    from app.events import dedupe

    wanted: set[str] = set()
    for key, want in oracle.items():
        got = table.get(key)
        if got is None or got.get("events", 0) >= want.get("events", 0):
            continue
        wanted |= set(dedupe.ids(want.get("recent_ids") or "")) - set(dedupe.ids(got.get("recent_ids") or ""))
    out: list[dict[str, Any]] = []
    for r in records:
        try:
            doc = orjson.loads(r.value or b"")
        except orjson.JSONDecodeError:
            continue
        docs = doc.get("events") if isinstance(doc, dict) and "events" in doc else [doc]
        for event in docs if isinstance(docs, list) else []:
            event_id = event.get("event_id") if isinstance(event, dict) else None
            if isinstance(event_id, str) and dedupe.digest(event_id) in wanted and len(out) < limit:
                out.append({"partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
                            "event_id": event_id})
    return out


def final_profile(anon: str, aliases: Mapping[str, Any], profiles: Mapping[str, Any]) -> str:
    """The profile an anonymous id's events end on: its alias (else its own), followed through merges.

    >>> final_profile("h", {"h": {"profile_id": "p-2"}}, {"p-2": {"merged_into": "p-3"}, "p-3": {}})
    'p-3'
    """
    from app.identity.hashing import profile_id_for

    alias = aliases.get(anon)
    pid = str(alias["profile_id"]) if alias else profile_id_for(anon)
    seen = {pid}
    while isinstance(profiles.get(pid), Mapping) and profiles[pid].get("merged_into"):
        pid = str(profiles[pid]["merged_into"])
        if pid in seen:
            break
        seen.add(pid)
    return pid


def compare_profiles(activity: Mapping[str, State], aliases: Mapping[str, Any],
                     profiles: Mapping[str, Any]) -> dict[str, Any]:
    """Events per live profile against the activity events of the visitors that end on it."""
    want: dict[str, int] = {}
    for anon, value in activity.items():
        pid = final_profile(anon, aliases, profiles)
        want[pid] = want.get(pid, 0) + int(value["events"])
    live = {pid: v for pid, v in profiles.items() if isinstance(v, Mapping) and "profile" in v}
    got = {pid: int(v["profile"]["events"]) for pid, v in live.items()}
    differing = sorted(pid for pid in set(want) | set(got) if want.get(pid, 0) != got.get(pid, 0))
    return {"profiles": len(live), "events_in_profiles": sum(got.values()), "events_expected": sum(want.values()),
            "differing_profiles": len(differing),
            "examples": [{"profile": p, "events": got.get(p), "expected": want.get(p)} for p in differing[:5]]}


def redis_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """A hash's fields as Redis returns them (redis-py writes ``str`` of each value).

    >>> redis_fields({"events": 3, "first_seen": 1.5, "profile_id": "p"})
    {'events': '3', 'first_seen': '1.5', 'profile_id': 'p'}
    """
    return {k: str(v) for k, v in fields.items()}


def compare_redis(expected: Mapping[str, Mapping[str, Any]], redis_client: Any) -> dict[str, Any]:
    """Serving keys of the activity and lookup families (whole hashes) and profiles (event count) against Redis."""
    from app.serving import keys as serving

    checked = missing = differing = 0
    examples: list[dict[str, Any]] = []
    missing_examples: list[str] = []
    stale_profile_ids = 0
    for key, fields in sorted(expected.items()):
        family = serving.family(key)
        if family not in ("activity", "identity", "profile"):
            continue
        want: dict[str, Any] = redis_fields(fields)
        got: dict[str, Any] = redis_client.hgetall(key)
        if family == "activity" and got and got.get("profile_id") != want.get("profile_id"):
            # Stamped when ingest last wrote the key: an alias that came later shows at the next event.
            stale_profile_ids += 1
            got = {**got, "profile_id": want.get("profile_id")}
        if family == "profile" and "merged_into" not in want:
            want, got = {"events": want.get("events")}, ({"events": got.get("events")} if got else {})
        checked += 1
        missing += not got
        if got and got != want:
            differing += 1
        if got and got != want and len(examples) < 5:
            examples.append({"key": key, "redis": dict(got), "tables": want})
        if not got and len(missing_examples) < 3:
            missing_examples.append(key)
    return {"keys_checked": checked, "missing": missing, "differing": differing, "differing_examples": examples,
            "missing_examples": missing_examples, "activity_keys_with_an_older_profile_id": stale_profile_ids}
