"""Fuzz through one real worker: hostile HTTP bodies, clickstream, crm-profiles and batch records.

One input in ``RELIABILITY_FUZZ_DRAW_EVERY`` (default 10) is drawn from the hypothesis
strategies of tests/reliability/fuzz.py, the others are bred from them (``fuzz.expand``:
values of one crossed into another, some damaged), which is what makes 100,000 inputs per
entry point an hour's run rather than four; ``RELIABILITY_FUZZ_DRAW_EVERY=1`` draws them all.
(``with_duplicates`` then resends one in fifty, as a retrying publisher does.)

Inputs go in chunks (``RELIABILITY_FUZZ_CHUNK``, default 5,000). After each chunk a canary
proves every stage still makes progress: a valid product view through clickstream must reach
the activity table (ingest) and the profile (profiles stage) in Redis, and for CRM chunks a
valid CRM record must become findable by its e-mail (ingest-crm and identity); then
``/health/ready`` must answer 200 (it names a crashed or stalled stage). The worker log is
scanned for tracebacks. A halted stage is reported (entry point, chunk, stage from the
traceback, the chunk's inputs saved for replay) and the fuzz goes on with a fresh deployment;
the test fails at the end if anything halted, answered 5xx or logged a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import strategies as st

from app.embedded.stack import EmbeddedStack
from app.identity.hashing import profile_id_for
from app.identity.pii import keyed_hash
from app.runtime.settings import DEV_HMAC_SECRET
from tests.integration.conftest import API_KEY, Pipeline, get
from tests.integration.events import event, iso, record
from tests.reliability import fuzz
from tests.reliability.report import RESULTS, LogWatch, rss_kib, size, stage_of, write_results

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(7200)]

#: Entry point -> (strategy of encoded inputs, topic field of Topics or "http").
ENTRY_POINTS: dict[str, tuple[st.SearchStrategy[bytes], str]] = {
    "http": (fuzz.http_body(), "http"),
    "clickstream": (fuzz.encoded(fuzz.event()), "clickstream"),
    "crm_profiles": (fuzz.encoded(fuzz.crm_record()), "crm_profiles"),
    "batch_records": (fuzz.batch_record(), "clickstream"),
}
CANARY_SECONDS = 60


async def post_all(port: int, bodies: list[bytes], headers: dict[str, str], concurrency: int = 16) -> Counter[int]:
    """POST every body to ``/v1/events``; count the statuses (0: no answer)."""
    import aiohttp

    statuses: Counter[int] = Counter()
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def client() -> None:
            while queue:
                body = queue.pop()
                try:
                    async with session.post(f"http://127.0.0.1:{port}/v1/events", data=body,
                                            headers={"Content-Type": "application/json", **headers}) as response:
                        await response.read()
                        statuses[response.status] += 1
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return statuses


def http_headers() -> dict[str, str]:
    """The test deployment's API key (tests/integration/conftest.py gives every worker it)."""
    return {"Authorization": f"Bearer {API_KEY.token}"}


class Deployment:
    """One pipeline and its worker; replaced by a fresh one after a stage halted."""

    def __init__(self, stack: EmbeddedStack, run_dir: Path) -> None:
        self.pipeline = Pipeline(stack, run_dir)
        self.worker, self.port = self.pipeline.start_worker()
        self.log = LogWatch(self.worker)
        self.rss_start = rss_kib(self.worker.proc.pid)

    def canary(self, tag: str, crm: bool) -> str | None:
        """None if every stage processed a fresh valid input in time, else what did not."""
        anon = f"canary-{tag}"
        doc = event(f"canary-{tag}", anon, "product_view",
                    properties={"product_id": "p1", "category": "shoes", "price": 10.0}, timestamp=iso(1))
        self.pipeline.produce(self.pipeline.topics.clickstream, [record(doc)])
        email = f"canary-{tag}@example.com"
        if crm:
            crm_doc = {"schema_version": 1, "record_id": f"canary-{tag}", "source": "crm",
                       "traits": {"email": email, "first_name": "Can"}}
            self.pipeline.produce(self.pipeline.topics.crm_profiles, [(b"canary", orjson.dumps(crm_doc))])
        profile_key = f"persona:profile:{profile_id_for(keyed_hash(DEV_HMAC_SECRET, 'anonymous_id', anon))}"
        lookup = f"/v1/profiles/lookup?type=email&value={urllib.parse.quote(email)}"
        checks = {
            "ingest (activity)": lambda: bool(self.pipeline.activity(anon)),
            "profiles": lambda: bool(self.pipeline.redis.exists(profile_key)),
            **({"ingest-crm/identity (lookup)": lambda: get(self.port, lookup)[0] == 200} if crm else {}),
        }
        deadline = time.monotonic() + CANARY_SECONDS
        while checks and time.monotonic() < deadline and self.worker.running and not self.log.crashed():
            checks = {name: check for name, check in checks.items() if not check()}
            time.sleep(0.2)
        if not self.worker.running:
            return f"worker exited with {self.worker.proc.returncode}"
        if self.log.crashed():
            return "an agent crashed"
        if checks:
            return f"no progress in {CANARY_SECONDS} s: {', '.join(checks)}"
        status, body = get(self.port, "/health/ready")  # a crashed or stalled stage makes it 503
        return None if status == 200 else f"/health/ready answered {status}: {body}"

    def send(self, entry: str, topic: str, inputs: list[bytes]) -> Counter[int]:
        if topic == "http":
            return asyncio.run(post_all(self.port, inputs, http_headers()))
        self.pipeline.produce(getattr(self.pipeline.topics, topic), [(None, value) for value in inputs])
        return Counter()

    def processing_errors(self) -> float:
        """Records the stages' code failed on and dead-lettered (reason ``processing_error``) so far."""
        try:
            return self.pipeline.metric(self.port, "persona_dead_letters_total", reason="processing_error")
        except OSError:
            return 0.0

    def stop(self) -> int:
        rss = rss_kib(self.worker.proc.pid)
        self.pipeline.stop()
        return rss


def save_inputs(entry: str, chunk: int, inputs: list[bytes]) -> Path:
    """The inputs of a chunk that halted a stage, base64 one per line, for replay."""
    path = RESULTS / f"reliability-fuzz-halt-{entry}-{chunk}-{uuid.uuid4().hex[:6]}.b64"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(base64.b64encode(x).decode() for x in inputs) + "\n")
    return path


def test_hostile_inputs_through_every_entry_point_halt_no_stage_and_get_no_5xx(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    n, chunk, draw_every = size("FUZZ_INPUTS", 100_000), size("FUZZ_CHUNK", 5_000), size("FUZZ_DRAW_EVERY", 10)
    wanted = os.environ.get("RELIABILITY_FUZZ_ENTRIES", ",".join(ENTRY_POINTS)).split(",")
    entries = [e for e in ENTRY_POINTS if e in wanted]
    deployment = Deployment(stack, tmp_path / "d0")
    rss_start, deployments = deployment.rss_start, 1
    figures: dict[str, Any] = {}
    for entry in entries:
        strategy, topic = ENTRY_POINTS[entry]
        started, statuses, halts, logged = time.monotonic(), Counter[int](), [], []
        sent, generated, bred, processing_errors = 0, 0, 0, 0.0
        for index in range(0, (n + chunk - 1) // chunk):
            count = min(chunk, n - index * chunk)
            drawn = fuzz.draw(strategy, -(-count // draw_every), seed=index)
            inputs = fuzz.with_duplicates(fuzz.expand(drawn, count, seed=index))
            generated, bred = generated + len(drawn), bred + count - len(drawn)
            before = deployment.processing_errors()
            statuses += deployment.send(entry, topic, inputs)
            sent += len(inputs)
            halted = deployment.canary(f"{entry}-{index}-{uuid.uuid4().hex[:6]}", crm=entry == "crm_profiles")
            processing_errors += deployment.processing_errors() - before
            problems = deployment.log.problems()
            logged += problems
            if halted:
                halts.append({"chunk": index, "what": halted, "stages": sorted({stage_of(p) for p in problems}),
                              "first_traceback": (problems or [deployment.worker.tail(40)])[0][-3000:],
                              "inputs": str(save_inputs(entry, index, inputs))})
                deployment.stop()
                deployment, deployments = Deployment(stack, tmp_path / f"d{deployments}"), deployments + 1
        five_xx = sum(v for k, v in statuses.items() if k >= 500)
        figures[entry] = {"inputs": sent, "drawn_by_hypothesis": generated, "bred": bred,
                          "resent": sent - generated - bred,
                          "halted": len(halts), "halts": halts, "http_statuses": dict(statuses),
                          "http_5xx": five_xx,
                          "processing_error_dead_letters": processing_errors, "logged_tracebacks": len(logged),
                          "traceback_stages": dict(Counter(stage_of(p) for p in logged)),
                          "seconds": round(time.monotonic() - started)}
    health = get(deployment.port, "/health/ready")
    rss_end = deployment.stop()
    figures["worker"] = {"deployments": deployments, "rss_start_kib": rss_start, "rss_end_kib": rss_end,
                         "rss_growth_kib": rss_end - rss_start if deployments == 1 else None, "health_at_end": health}
    write_results("fuzz_worker", figures)
    bad = {e: (figures[e]["halted"], figures[e]["http_5xx"], figures[e]["logged_tracebacks"]) for e in entries}
    assert bad == dict.fromkeys(entries, (0, 0, 0)), "(halted stages, HTTP 5xx, logged tracebacks) per entry point"
