"""The traffic simulator generates valid, realistic, reproducible records with true ground truth."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft7Validator, FormatChecker

from app.errors import ConfigError
from app.simulator import SimConfig, SimRecord, iter_records
from app.simulator.catalog import Catalog
from app.simulator.clock import to_ms
from app.simulator.malformed import CLICKSTREAM_REASONS, CRM_REASONS
from app.simulator.population import Customer, build_population

ROOT = Path(__file__).resolve().parents[2]
END = datetime(2024, 3, 1, tzinfo=UTC)
END_MS = to_ms(END)
START_MS = END_MS - 14 * 86_400_000
RFC3339_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
SAMPLE = SimConfig(seed=11, customers=400, end=END, malformed_share=0.03, duplicate_share=0.02)


def _strict_format_checker() -> FormatChecker:
    """jsonschema's checker with a real RFC 3339 date-time check.

    Without the optional rfc3339-validator package jsonschema skips "date-time"
    silently, so the check is registered here instead.
    """
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not RFC3339.match(value):
            return False
        datetime.fromisoformat(value.replace("z", "Z"))
        return True

    return checker


def _validator(name: str) -> Draft7Validator:
    schema = json.loads((ROOT / "schemas" / name).read_text())
    return Draft7Validator(schema, format_checker=_strict_format_checker())


def _ms(timestamp: str) -> int:
    return to_ms(datetime.fromisoformat(timestamp))


@pytest.fixture(scope="module")
def sample() -> list[SimRecord]:
    return list(iter_records(SAMPLE))


@pytest.fixture(scope="module")
def population() -> dict[str, Customer]:
    return {c.customer_id: c for c in build_population(SAMPLE)}


@pytest.fixture(scope="module")
def events(sample: list[SimRecord]) -> list[tuple[SimRecord, dict[str, Any]]]:
    """Valid clickstream events (retry copies excluded) with their parsed documents."""
    return [(r, orjson.loads(r.value)) for r in sample
            if r.topic == "clickstream" and not r.malformed and not r.duplicate]


@pytest.fixture(scope="module")
def sessions(events: list[tuple[SimRecord, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record, doc in events:
        assert record.truth is not None
        by_session[record.truth["session_id"]].append(doc)
    return by_session


def _digest(records: list[SimRecord]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(r.topic.encode() + b"\0" + r.key + b"\0" + r.value + b"\n")
    return h.hexdigest()


# ---------------------------------------------------------------- determinism


def test_same_config_gives_identical_bytes() -> None:
    config = SimConfig(seed=5, customers=60, end=END, max_events=4000)
    first = list(iter_records(config))
    second = list(iter_records(config))
    assert [(r.topic, r.key, r.value) for r in first] == [(r.topic, r.key, r.value) for r in second]
    assert [r.truth for r in first] == [r.truth for r in second]


def test_different_seed_gives_different_records() -> None:
    a = list(iter_records(SimConfig(seed=5, customers=60, end=END, max_events=2000)))
    b = list(iter_records(SimConfig(seed=6, customers=60, end=END, max_events=2000)))
    assert _digest(a) != _digest(b)
    assert not {r.value for r in a} & {r.value for r in b}


def test_output_does_not_depend_on_the_process_hash_seed() -> None:
    code = (
        "import hashlib, sys\n"
        "from datetime import datetime, UTC\n"
        "from app.simulator import SimConfig, iter_records\n"
        "h = hashlib.sha256()\n"
        "for r in iter_records(SimConfig(seed=3, customers=40, end=datetime(2024, 3, 1, tzinfo=UTC),"
        " max_events=3000)):\n"
        "    h.update(r.topic.encode() + b'\\0' + r.key + b'\\0' + r.value + b'\\n')\n"
        "print(h.hexdigest())\n"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("0", "4242")
    }
    local = _digest(list(iter_records(SimConfig(seed=3, customers=40, end=END, max_events=3000))))
    assert digests == {local}


# ---------------------------------------------------------------- contract


def test_date_time_format_check_is_real() -> None:
    checker = _strict_format_checker()
    assert checker.conforms("2024-03-01T10:00:00.000Z", "date-time")
    for bad in ("2024-03-01", "2024-03-01 10:00:00Z", "yesterday", "2024-13-01T10:00:00Z"):
        assert not checker.conforms(bad, "date-time"), bad


def test_every_valid_record_validates_against_its_schema() -> None:
    # A whole (small) run: jsonschema takes ~0.4 ms a record, too slow for the large sample,
    # which the worker-validator test below checks record by record instead.
    run = list(iter_records(SimConfig(seed=13, customers=60, end=END)))
    clickstream = _validator("clickstream.v1.json")
    crm = _validator("crm-profiles.v1.json")
    checked: Counter[str] = Counter()
    for record in run:
        if record.malformed:
            continue
        doc = json.loads(record.value.decode("utf-8"))
        validator = clickstream if record.topic == "clickstream" else crm
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (errors, doc)
        assert doc["schema_version"] == 1
        checked[doc.get("type", record.topic)] += 1
    event_types = set(clickstream.schema["$defs"]["envelope"]["properties"]["type"]["enum"])
    assert set(checked) == event_types | {"crm-profiles"}


def test_timestamps_are_rfc3339_utc_with_milliseconds_inside_the_period(
        sample: list[SimRecord]) -> None:
    for record in sample:
        if record.malformed:
            continue
        doc = orjson.loads(record.value)
        stamp = doc.get("timestamp") or doc["updated_at"]
        assert RFC3339_MS_Z.match(stamp), stamp
        assert START_MS <= _ms(stamp) <= END_MS


def test_keys_are_anonymous_ids_and_record_ids(sample: list[SimRecord]) -> None:
    for record in sample:
        if record.malformed:
            continue
        doc = orjson.loads(record.value)
        expected = doc["anonymous_id"] if record.topic == "clickstream" else doc["record_id"]
        assert record.key == expected.encode()


def test_event_ids_are_unique(events: list[tuple[SimRecord, dict[str, Any]]]) -> None:
    ids = [doc["event_id"] for _, doc in events]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- malformed records


def _reason(record: SimRecord, clickstream: Draft7Validator, crm: Draft7Validator) -> str | None:
    """The reason a strict consumer rejects ``record`` for, checking in contract order."""
    try:
        text = record.value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_encoding"
    try:
        doc = json.loads(text)
    except ValueError:
        return "invalid_json"
    if not isinstance(doc, dict):
        return "not_an_object"
    if doc.get("schema_version") != 1:
        return "unsupported_schema_version"
    if record.topic == "clickstream":
        types = clickstream.schema["$defs"]["envelope"]["properties"]["type"]["enum"]
        if isinstance(doc.get("type"), str) and doc["type"] not in types:
            return "unknown_type"
        if next(clickstream.iter_errors(doc), None) is not None:
            return "schema_violation"
        if not START_MS - 86_400_000 <= _ms(doc["timestamp"]) <= END_MS + 86_400_000:
            return "timestamp_out_of_range"
        return None
    return "schema_violation" if next(crm.iter_errors(doc), None) is not None else None


def test_every_malformed_record_fails_for_its_stated_reason(sample: list[SimRecord]) -> None:
    clickstream = _validator("clickstream.v1.json")
    crm = _validator("crm-profiles.v1.json")
    seen: Counter[tuple[str, str]] = Counter()
    for record in sample:
        if not record.malformed:
            continue
        assert record.truth is not None
        expected = record.truth["expected_reason"]
        allowed = CLICKSTREAM_REASONS if record.topic == "clickstream" else CRM_REASONS
        assert expected in allowed
        assert _reason(record, clickstream, crm) == expected, record
        seen[(record.topic, expected)] += 1
    assert {reason for topic, reason in seen if topic == "clickstream"} == set(CLICKSTREAM_REASONS)
    assert {reason for topic, reason in seen if topic == "crm-profiles"} <= set(CRM_REASONS)


def test_malformed_records_get_their_reason_from_the_worker_validator(
        sample: list[SimRecord]) -> None:
    validation = pytest.importorskip("app.events.validation")
    validator = validation.Validator()
    now = END.timestamp()
    for record in sample:
        if record.topic == "clickstream":
            result = validator.clickstream(record.value, now=now)
        else:
            result = validator.crm_record(record.value)
        code = getattr(result, "code", None)
        assert code == (record.truth["expected_reason"] if record.malformed else None), (code, record)


def test_malformed_share_is_as_configured() -> None:
    none = list(iter_records(SimConfig(seed=2, customers=100, end=END, malformed_share=0.0)))
    assert not any(r.malformed for r in none)
    some = list(iter_records(SimConfig(seed=2, customers=100, end=END, malformed_share=0.05)))
    share = sum(r.malformed for r in some) / len(some)
    assert 0.04 < share < 0.06


# ---------------------------------------------------------------- order, retries


def test_records_are_sent_in_timestamp_order(sample: list[SimRecord]) -> None:
    last = 0
    for record in sample:
        if record.duplicate or (record.malformed and record.truth
                                and record.truth["expected_reason"] == "timestamp_out_of_range"):
            continue
        try:
            doc = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("timestamp") or doc.get("updated_at"), str):
            continue
        ts = _ms(doc.get("timestamp") or doc["updated_at"])
        assert ts >= last
        last = ts


def test_retries_are_byte_identical_copies_sent_a_little_later(sample: list[SimRecord]) -> None:
    originals: dict[str, tuple[int, SimRecord]] = {}
    retries = 0
    for position, record in enumerate(sample):
        if record.malformed or record.topic != "clickstream":
            continue
        event_id = orjson.loads(record.value)["event_id"]
        if record.duplicate:
            assert record.truth is not None and record.truth["duplicate_of"] == event_id
            first_position, original = originals[event_id]
            assert first_position < position
            assert (original.key, original.value) == (record.key, record.value)
            assert record.truth["session_id"] == (original.truth or {})["session_id"]
            retries += 1
        else:
            originals[event_id] = (position, record)
    assert 0.01 < retries / len(originals) < 0.03


# ---------------------------------------------------------------- sessions


def test_sessions_have_short_gaps_inside_and_long_gaps_between(
        sessions: dict[str, list[dict[str, Any]]]) -> None:
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for session_id, docs in sessions.items():
        times = [_ms(d["timestamp"]) for d in docs]
        assert len({d["anonymous_id"] for d in docs}) == 1
        assert len({d["context"]["device"]["id"] for d in docs}) == 1
        assert all(0 <= b - a <= 10 * 60_000 for a, b in itertools.pairwise(times)), session_id
        spans[session_id.rsplit("-s", 1)[0]].append((times[0], times[-1]))
    for customer_spans in spans.values():
        customer_spans.sort()
        for (_, end), (start, _) in itertools.pairwise(customer_spans):
            assert start - end >= 45 * 60_000


def test_a_30_minute_inactivity_rule_recovers_the_true_sessions(
        events: list[tuple[SimRecord, dict[str, Any]]]) -> None:
    by_cookie: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for record, doc in events:
        assert record.truth is not None
        by_cookie[doc["anonymous_id"]].append((_ms(doc["timestamp"]), doc["event_id"],
                                               record.truth["session_id"]))
    for cookie_events in by_cookie.values():
        recovered: list[set[str]] = [set()]
        last = None
        for ts, _, session_id in cookie_events:
            if last is not None and ts - last > 30 * 60_000:
                recovered.append(set())
            recovered[-1].add(session_id)
            last = ts
        assert all(len(s) == 1 for s in recovered)
        assert len({next(iter(s)) for s in recovered}) == len(recovered)


# ---------------------------------------------------------------- behaviour


def test_purchases_contain_exactly_the_session_cart(
        sessions: dict[str, list[dict[str, Any]]]) -> None:
    catalog = {p.product_id: p for p in Catalog.build(SAMPLE.seed).products}
    purchases = 0
    for docs in sessions.values():
        cart: dict[str, int] = {}
        for doc in docs:
            props = doc.get("properties", {})
            if doc["type"] in ("product_view", "add_to_cart"):
                assert props["price"] == catalog[props["product_id"]].price
            if doc["type"] == "add_to_cart":
                cart[props["product_id"]] = cart.get(props["product_id"], 0) + props["quantity"]
            elif doc["type"] == "remove_from_cart":
                assert cart.pop(props["product_id"]) == props["quantity"]
            elif doc["type"] == "purchase":
                assert {i["product_id"]: i["quantity"] for i in props["items"]} == cart
                revenue = sum(i["price"] * i["quantity"] for i in props["items"])
                assert props["revenue"] == pytest.approx(revenue, abs=0.005)
                assert props["currency"] == "GBP"
                purchases += 1
                cart = {}
    assert purchases > 100


def test_archetypes_behave_differently(events: list[tuple[SimRecord, dict[str, Any]]],
                                       population: dict[str, Customer]) -> None:
    types: dict[str, Counter[str]] = defaultdict(Counter)
    revenue: dict[str, float] = defaultdict(float)
    item_prices: dict[str, list[float]] = defaultdict(list)
    last_seen: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for record, doc in events:
        assert record.truth is not None
        archetype, customer = record.truth["archetype"], record.truth["customer_id"]
        types[archetype][doc["type"]] += 1
        ts = _ms(doc["timestamp"])
        first_seen.setdefault(customer, ts)
        last_seen[customer] = ts
        if doc["type"] == "purchase":
            revenue[archetype] += doc["properties"]["revenue"]
            item_prices[archetype] += [i["price"] for i in doc["properties"]["items"]]
    members = Counter(c.archetype.name for c in population.values())

    def per_customer(archetype: str, event_type: str) -> float:
        return types[archetype][event_type] / members[archetype]

    assert types["browser_never_buys"]["purchase"] == 0
    assert types["browser_never_buys"]["add_to_cart"] == 0
    assert revenue["loyal_high_value"] / members["loyal_high_value"] > (
        3 * revenue["bargain_hunter"] / members["bargain_hunter"])
    mean = {a: sum(p) / len(p) for a, p in item_prices.items() if p}
    assert mean["loyal_high_value"] > 3 * mean["bargain_hunter"]
    # Cart abandoners fill carts but rarely pay.
    abandon = types["cart_abandoner"]
    loyal = types["loyal_high_value"]
    assert abandon["purchase"] / abandon["add_to_cart"] < 0.3 * loyal["purchase"] / loyal["add_to_cart"]
    # Bargain hunters search more than anyone.
    assert per_customer("bargain_hunter", "search") > per_customer("loyal_high_value", "search")
    assert per_customer("loyal_high_value", "email_open") > 3 * per_customer("browser_never_buys", "email_open")
    assert per_customer("loyal_high_value", "recommendation_click") > per_customer(
        "bargain_hunter", "recommendation_click")
    span = END_MS - START_MS
    lapsed = [c for c in population.values() if c.archetype.name == "lapsed"]
    assert lapsed and all(last_seen.get(c.customer_id, START_MS) < START_MS + 0.5 * span for c in lapsed)
    newcomers = [first_seen[c.customer_id] for c in population.values()
                 if c.archetype.name == "new_visitor" and c.customer_id in first_seen]
    assert sum(ts > START_MS + 86_400_000 for ts in newcomers) > 0.6 * len(newcomers)


def test_consent_is_granted_and_withdrawn(events: list[tuple[SimRecord, dict[str, Any]]]) -> None:
    grants = withdrawals = 0
    for _, doc in events:
        if doc["type"] == "consent":
            values = doc["properties"]["purposes"].values()
            grants += any(values)
            withdrawals += doc["properties"]["source"] == "preference_centre" and not any(values)
    assert grants > 100 and withdrawals > 5


# ---------------------------------------------------------------- identity


def test_customers_have_several_devices_and_cookies_each_owned_by_one_customer(
        events: list[tuple[SimRecord, dict[str, Any]]]) -> None:
    cookies: dict[str, set[str]] = defaultdict(set)
    owners: dict[str, set[str]] = defaultdict(set)
    devices: dict[str, set[str]] = defaultdict(set)
    for record, doc in events:
        assert record.truth is not None
        customer = record.truth["customer_id"]
        cookies[customer].add(doc["anonymous_id"])
        owners[doc["anonymous_id"]].add(customer)
        devices[customer].add(doc["context"]["device"]["id"])
    assert all(len(o) == 1 for o in owners.values())
    assert sum(len(d) >= 2 for d in devices.values()) > 0.3 * len(devices)
    # Cookie resets give some customers more cookies than devices.
    assert any(len(cookies[c]) > len(devices[c]) for c in cookies)


def test_events_after_login_carry_the_customers_user_id(
        sessions: dict[str, list[dict[str, Any]]], population: dict[str, Customer]) -> None:
    logins = 0
    for session_id, docs in sessions.items():
        person = population[session_id.rsplit("-s", 1)[0]].person
        logged_in = None
        for doc in docs:
            if "user_id" in doc:
                assert doc["user_id"] == person.user_id
            if logged_in is not None:
                assert doc.get("user_id") == logged_in
            traits = doc.get("properties", {}).get("traits", {})
            if doc["type"] == "identify" and "user_id" in traits:
                assert traits["user_id"] == doc["user_id"] == person.user_id
                logged_in = traits["user_id"]
                logins += 1
    assert logins > 100


def test_identifiers_appear_in_several_surface_forms(sample: list[SimRecord],
                                                     population: dict[str, Customer]) -> None:
    emails: dict[str, set[str]] = defaultdict(set)
    phones: dict[str, set[str]] = defaultdict(set)
    typos = 0
    for record in sample:
        if record.malformed or record.truth is None:
            continue
        doc = orjson.loads(record.value)
        traits = doc.get("traits") or doc.get("properties", {}).get("traits") or {}
        person = population[record.truth["customer_id"]].person
        if "email" in traits:
            if traits["email"].strip().lower() == person.email:
                emails[person.email].add(traits["email"])
            else:
                typos += 1
        if "phone" in traits:
            digits = re.sub(r"\(0\)|\D", "", traits["phone"])
            assert re.sub(r"^(0044|44|0)", "", digits) == person.phone.removeprefix("+44")
            phones[person.phone].add(traits["phone"])
    assert any(len(forms) >= 2 for forms in emails.values())
    assert sum(len(forms) >= 2 for forms in emails.values()) > 20
    assert any(len(forms) >= 3 for forms in phones.values())
    assert typos > 0  # some e-mails are misspelt and must not normalise to the truth


def test_crm_records_describe_the_same_people_with_variations(
        sample: list[SimRecord], population: dict[str, Customer]) -> None:
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in sample:
        if record.topic == "crm-profiles" and not record.malformed:
            assert record.truth is not None
            records[record.truth["customer_id"]].append(orjson.loads(record.value))
    assert 0.5 < len(records) / len(population) < 0.7
    assert all(1 <= len(r) <= 3 for r in records.values())
    sources = Counter(doc["source"] for docs in records.values() for doc in docs)
    assert set(sources) == {"crm", "pos", "call_centre"}
    differs = 0
    for customer_id, docs in records.items():
        person = population[customer_id].person
        for doc in docs:
            differs += doc["traits"]["first_name"] != person.first_name
            if "loyalty_id" in doc["traits"]:
                assert doc["traits"]["loyalty_id"] == person.loyalty_id
    assert differs > 20


# ---------------------------------------------------------------- config and laziness


def test_max_events_limits_the_stream() -> None:
    assert sum(1 for _ in iter_records(SimConfig(customers=30, end=END, max_events=123))) == 123
    assert list(iter_records(SimConfig(customers=30, end=END, max_events=0))) == []


@pytest.mark.parametrize("bad", [
    {"customers": 0}, {"days": 0}, {"days": float("nan")}, {"malformed_share": 1.0},
    {"duplicate_share": -0.1}, {"crm_share": 2.0}, {"max_events": -1},
    {"end": datetime(1970, 1, 3, tzinfo=UTC)},
])
def test_invalid_config_is_rejected_with_a_clear_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        iter_records(SimConfig(**{"end": END, **bad}))


def test_generation_is_lazy_and_memory_stays_bounded() -> None:
    # Ten years of 2,000 customers would be tens of millions of records.
    config = SimConfig(seed=1, customers=2000, days=3650, end=END)
    started = time.perf_counter()
    records = iter_records(config)
    assert sum(1 for _ in itertools.islice(records, 2000)) == 2000
    assert time.perf_counter() - started < 5
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert sum(1 for _ in itertools.islice(records, 20_000)) == 20_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Measured ~4 MB: a few open sessions, the heap and the timestamp-prefix cache.
    assert peak - before < 10 * 1024 * 1024


def test_naive_end_is_taken_as_utc() -> None:
    naive = SimConfig(seed=4, customers=20, end=END.replace(tzinfo=None), max_events=200)
    aware = SimConfig(seed=4, customers=20, end=END, max_events=200)
    assert [r.value for r in iter_records(naive)] == [r.value for r in iter_records(aware)]
