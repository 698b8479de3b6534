"""Nobody unauthorised gets in: one real worker, its keys, scopes, rate limits and HTTP hygiene."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import pytest

from app.runtime.auth import new_key
from tests.integration.conftest import API_KEY, Pipeline, get, post
from tests.integration.events import event

pytestmark = pytest.mark.integration

WEBSITE = new_key("website", ["ingest"], ["web"])
READER = new_key("reader", ["read"])
READ_BURST = 3


def listening_addresses(port: int) -> set[str]:
    """Addresses with a TCP socket in LISTEN on ``port``, from /proc/net/tcp and tcp6."""
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words))
    return found


def answer(port: int, method: str, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request (http.client: the headers are wanted here)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def closed_within(port: int, request: bytes, seconds: float) -> tuple[bytes, float]:
    """Send a raw (incomplete) request and read until the server closes: what it sent, and when."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def test_only_keys_with_the_right_scope_get_in_and_the_http_surface_is_hardened(pipeline: Pipeline) -> None:
    pipeline.env_overrides.update({
        "PERSONA_API_KEYS": ";".join(k.entry for k in (API_KEY, WEBSITE, READER)),
        "PERSONA_READ_RATE": "0.01",
        "PERSONA_READ_BURST": str(READ_BURST),
        "PERSONA_MAX_RECORD_BYTES": "16384",  # bodies up to 64 x 16 KiB = 1 MiB
        "PERSONA_HEADER_TIMEOUT_SECONDS": "2",
        "PERSONA_BODY_TIMEOUT_SECONDS": "1",
    })
    worker, port = pipeline.start_worker()

    # The server listens on the configured loopback address only, not on every interface.
    assert listening_addresses(port) == {"127.0.0.1"}

    # No key (or a wrong one): 401 with a JSON error on every endpoint not configured open.
    protected = [("GET", "/v1/profiles/p-1"), ("GET", "/v1/profiles/lookup?type=email&value=a%40b.example"),
                 ("GET", "/v1/segments"), ("GET", "/v1/clusters/model"), ("POST", "/v1/events")]
    for method, path in protected:
        for token in (None, "tests.not-the-secret", "garbage"):
            status, headers, body = answer(port, method, path, token)
            assert (status, headers.get("WWW-Authenticate")) == (401, 'Bearer realm="persona"'), (method, path)
            assert "API key" in json.loads(body)["error"]
    assert get(port, "/health", token=None)[0] == 200
    assert answer(port, "GET", "/metrics")[0] == 200

    # Faust's own views are gone, whoever asks.
    for path in ("/", "/table/", "/table/identity/", "/router/", "/graph/", "/stats/"):
        assert get(port, path)[0] == 404, path

    # Wrong scope: 403.
    assert post(port, "/v1/events", b"[]", token=READER.token)[0] == 403
    assert get(port, "/v1/segments", token=WEBSITE.token)[0] == 403

    # A website key posts web events only: another channel is rejected per event, with its reason.
    web_event = event("s1", "anon-s", context={"channel": "web"})
    status, body = post(port, "/v1/events", json.dumps([web_event, event("s2", "anon-s", context={"channel": "pos"}),
                                                        event("s3", "anon-s")]).encode(), token=WEBSITE.token)
    assert status == 202 and body["accepted"] == 1
    assert [r["reason"]["code"] for r in body["results"][1:]] == ["source_not_allowed"] * 2
    assert "channel web only" in body["results"][1]["reason"]["message"]

    # Hygiene: JSON only (415), our own JSON 413, 400 when no event is valid (results still listed).
    status, body = post(port, "/v1/events", json.dumps(web_event).encode(), content_type="text/plain")
    assert status == 415 and "application/json" in body["error"]
    status, body = post(port, "/v1/events", b"[" + b" " * (1 << 20) + b"]")
    assert status == 413 and "larger than" in body["error"]
    status, body = post(port, "/v1/events", json.dumps([{"type": "page_view"}]).encode())
    assert status == 400 and body["accepted"] == 0 and body["results"][0]["status"] == "rejected"

    # Per-key rate limit on reads: the burst, then 429 with Retry-After; other keys are unaffected.
    statuses = [answer(port, "GET", "/v1/profiles/p-1", READER.token) for _ in range(READ_BURST + 1)]
    assert [s for s, _, _ in statuses] == [404] * READ_BURST + [429]
    _, headers, body = statuses[-1]
    assert int(headers["Retry-After"]) >= 1 and "rate limit" in json.loads(body)["error"]
    assert get(port, "/v1/profiles/p-1")[0] == 404

    # A body announced and never sent: 408 after the body timeout, then the connection is closed.
    stalled = (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY.token}\r\n"
               "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode()
    received, took = closed_within(port, stalled, 15)
    assert received.startswith(b"HTTP/1.1 408") and took < 8, (received[:200], took)
    # Headers never finished: closed after the header timeout.
    received, took = closed_within(port, b"GET /health HTTP/1.1\r\nHost: x\r\n", 15)
    assert received == b"" and 1.5 < took < 8, took

    # Malformed framing: 400, logged in one line, not a traceback.
    received, _ = closed_within(port, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: nan\r\n\r\n", 15)
    assert received.split(b"\r\n")[0].endswith(b" 400 Bad Request"), received[:200]
    time.sleep(0.5)
    log = worker.tail(400)
    assert "malformed HTTP request from" in log
    assert "Error handling request" not in log and "Traceback" not in log, log[-3000:]

    # Every refusal above is counted by status.
    refused = {status: pipeline.metric(port, "persona_http_refused_total", status=status)
               for status in ("401", "403", "404", "408", "413", "415", "429")}
    assert refused == {"401": 15, "403": 2, "404": 6, "408": 1, "413": 1, "415": 1, "429": 1}
