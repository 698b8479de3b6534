"""API keys, scopes, source binding, token buckets and the worker's start-up refusals (pure logic)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from app.cli import cli
from app.errors import ConfigError
from app.runtime import auth
from app.runtime.settings import DEV_HMAC_SECRET, Settings

SITE = auth.new_key("site", ["ingest"], ["web", "app"])
OPS = auth.new_key("ops", ["admin"])
RING_KEYS = auth.parse_keys(f"{SITE.entry}\n{OPS.entry}")


def test_a_token_verifies_only_against_its_own_entry_and_forgeries_fail() -> None:
    ring = auth.KeyRing(RING_KEYS)
    assert ring.verify(SITE.token) == RING_KEYS[0]
    assert ring.verify(OPS.token) == RING_KEYS[1]
    secret = SITE.token.split(".", 1)[1]
    for forged in (f"ops.{secret}", SITE.token + "x", SITE.token[:-1], "site", "", "nobody." + secret):
        assert ring.verify(forged) is None, forged


@settings(max_examples=300, deadline=None)
@given(secret=st.text(), name=st.sampled_from(["site", "ops", "nobody", ""]))
def test_any_header_text_is_refused_or_verified_never_raises(secret: str, name: str) -> None:
    # aiohttp decodes a header's invalid UTF-8 as lone surrogates (a flipped byte in a token).
    for token in (f"{name}.{secret}", f"{name}.{secret}\udcff", secret):
        assert auth.KeyRing(RING_KEYS).verify(token) in (None, *RING_KEYS)


def test_unknown_key_names_are_refused_without_a_key_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "derive", lambda token, salt: pytest.fail("derived for an unknown name"))
    assert auth.KeyRing(RING_KEYS).verify("mallory.abc") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("site:ingest:web:00", "must be NAME:SCOPES:SOURCES:SALT:HASH"),
        ("s!te:read:*:00:" + "ab" * 32, "the name must be"),
        ("site::*:00:" + "ab" * 32, "no scope"),
        ("site:write:*:00:" + "ab" * 32, "unknown scope 'write'"),
        ("site:read:sms:00:" + "ab" * 32, "unknown source 'sms'"),
        ("site:read:*:zz:" + "ab" * 32, "lower-case hex"),
        ("site:read:*:00:abcd", "lower-case hex"),
        (f"{OPS.entry};{OPS.entry}", "names a key twice"),
    ],
)
def test_bad_key_entries_are_config_errors_naming_what_is_wrong(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        auth.parse_keys(entry)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"PERSONA_API_KEYS": entry})


def test_scopes_decide_each_route() -> None:
    site, ops = RING_KEYS
    reader = auth.ApiKey("r", frozenset({"read"}), frozenset(), b"", b"")
    routes = {
        ("POST", "/v1/events"): (True, False, True),
        ("GET", "/v1/profiles/{profile_id}"): (False, True, True),
        ("GET", "/v1/profiles/lookup"): (False, True, True),
        ("GET", "/v1/segments"): (False, True, True),
        ("GET", "/v1/clusters/model"): (False, True, True),
        ("PUT", "/v1/segments"): (False, False, True),
        ("GET", "/metrics"): (True, True, True),  # closed monitoring endpoints: any valid key
    }
    for (method, path), expected in routes.items():
        needed = auth.requirement(method, path, open_groups=())
        assert (site.allows(needed), reader.allows(needed), ops.allows(needed)) == expected, (method, path)
    assert auth.requirement("GET", "/health/live", ["health"]) is None
    assert auth.requirement("GET", "/metrics", ["health"]) == auth.ANY_KEY


def test_a_source_bound_key_posts_only_its_channels() -> None:
    site = RING_KEYS[0]
    assert site.source_refusal({"context": {"channel": "app"}}) is None
    for doc in ({"context": {"channel": "pos"}}, {"context": {"channel": "call_centre"}}, {}, {"context": "web"}, 7):
        assert "may post events of channel app, web only" in str(site.source_refusal(doc))
    assert RING_KEYS[1].source_refusal({"context": {"channel": "pos"}}) is None  # not bound: any channel


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 1000), burst=st.integers(1, 1000),
    steps=st.lists(st.tuples(st.floats(0, 5), st.integers(1, 50)), max_size=40),
)
def test_a_token_bucket_never_grants_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    bucket, now, granted = None, 0.0, 0
    for gap, cost in steps:
        now += gap
        before = bucket
        bucket, wait = auth.take(bucket, cost, now, rate, burst)
        if wait == 0:
            granted += cost
        elif math.isfinite(wait):  # after the wait it is granted
            assert auth.take(before, cost, now + wait * (1 + 1e-9) + 1e-9, rate, burst)[1] == 0
        else:
            assert cost > burst
        assert 0 <= bucket.tokens <= burst
    assert granted <= burst + rate * now + 1e-6


def test_retry_after_is_whole_seconds_and_a_cost_above_the_burst_never_passes() -> None:
    bucket, _ = auth.take(None, 5, 0.0, rate=2.0, burst=5)
    _, wait = auth.take(bucket, 1, 0.1, rate=2.0, burst=5)
    assert math.isclose(wait, 0.4) and auth.retry_after(wait) == "1"
    assert math.isinf(auth.take(None, 6, 0.0, rate=2.0, burst=5)[1])


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({"PERSONA_WEB_HOST": "0.0.0.0", "PERSONA_HMAC_SECRET": "s" * 32}, "PERSONA_API_KEYS"),
        ({"PERSONA_WEB_HOST": "10.1.2.3", "PERSONA_HMAC_SECRET": "s" * 32}, "PERSONA_API_KEYS"),
        ({}, "PERSONA_HMAC_SECRET"),
        ({"PERSONA_WEB_HOST": "0.0.0.0", "PERSONA_API_KEYS": OPS.entry}, "PERSONA_HMAC_SECRET"),
        ({"PERSONA_WEB_HOST": "0.0.0.0", "PERSONA_API_KEYS": OPS.entry, "PERSONA_HMAC_SECRET": "s" * 32}, None),
        ({"PERSONA_EMBEDDED_STACK": "1"}, None),
        ({"PERSONA_EMBEDDED_STACK": "1", "PERSONA_WEB_HOST": "::"}, "PERSONA_API_KEYS"),
    ],
)
def test_startup_refusals_name_the_setting(env: dict[str, str], refused: str | None) -> None:
    refusal = Settings.from_env(env).startup_refusal()
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal and "\n" not in refusal


def test_persona_worker_refuses_a_public_address_without_keys_in_one_line_before_touching_kafka() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PERSONA_WEB_HOST": "0.0.0.0", "PERSONA_HMAC_SECRET": DEV_HMAC_SECRET + "-but-mine",
             "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: refusing to serve on 0.0.0.0")
    assert "PERSONA_API_KEYS" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_keys_create_prints_a_token_once_and_an_entry_that_verifies_it() -> None:
    args = ["keys", "create", "--name", "site", "--scopes", "ingest,read", "--sources", "web"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    token, entry = lines[1], lines[3]
    assert entry.startswith("site:ingest,read:web:") and token.split(".")[1] not in entry
    Settings.from_env({"PERSONA_API_KEYS": entry})  # a valid setting
    key = auth.KeyRing(auth.parse_keys(entry)).verify(token)
    assert key is not None and key.scopes == {"ingest", "read"} and key.sources == {"web"}
    bad = CliRunner().invoke(cli, ["keys", "create", "--name", "x", "--scopes", "root"])
    assert bad.exit_code == 1 and "unknown scope 'root'" in bad.output


def test_open_endpoints_setting_accepts_health_metrics_or_none() -> None:
    assert Settings.from_env({"PERSONA_OPEN_ENDPOINTS": "none"}).open_endpoints == "none"
    with pytest.raises(ConfigError, match="PERSONA_OPEN_ENDPOINTS"):
        Settings.from_env({"PERSONA_OPEN_ENDPOINTS": "health,v1"})
    with pytest.raises(ConfigError, match="PERSONA_INGEST_BURST must be at least 1000"):
        Settings.from_env({"PERSONA_INGEST_BURST": "10"})
