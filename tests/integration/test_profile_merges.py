"""Identity merges and CRM traits reach the profiles stage, through the real broker and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from app.embedded.stack import EmbeddedStack
from app.identity.hashing import profile_id_for
from app.identity.pii import keyed_hash
from app.runtime.settings import DEV_HMAC_SECRET, Settings
from tests.integration.conftest import Pipeline, get, wait_for
from tests.integration.events import event, iso, product_view, record
from tests.integration.test_identity import anon_hash, crm, identify, profile_of

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).parents[2] / "schemas"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.v1.json").read_text())
    return loaded


@pytest.fixture(params=[(1, 1), (4, 2)], ids=["1-partition-1-worker", "4-partitions-2-workers"])
def deployment(request: pytest.FixtureRequest, stack: EmbeddedStack, tmp_path: Path) -> Iterator[Pipeline]:
    """One partition, and four partitions over two workers (the two profiles' states then
    usually live in different partitions, often on different workers)."""
    partitions, workers = request.param
    pipeline = Pipeline(stack, tmp_path, partitions=partitions)
    try:
        for _ in range(workers):
            pipeline.start_worker(wait=False)
        for worker, port in pipeline.workers:
            pipeline.wait_ready(worker, port)
        yield pipeline
    finally:
        pipeline.stop()


def test_a_login_merges_two_browsers_into_one_profile_with_segment_changes_and_crm_traits(
    deployment: Pipeline,
) -> None:
    pipeline = deployment
    port = pipeline.workers[0][1]
    pipeline.produce(pipeline.topics.clickstream, [
        record(product_view("a1", "anon-a")), record(product_view("a2", "anon-a")),
        record(product_view("b1", "anon-b")), record(product_view("b2", "anon-b")),
    ])
    wait_for(lambda: profile_of(pipeline, "anon-a") is not None and profile_of(pipeline, "anon-b") is not None, 60,
             lambda: pipeline.workers[0][0].tail(80))
    first = {profile_of(pipeline, "anon-a"), profile_of(pipeline, "anon-b")}
    wait_for(lambda: all(get(port, f"/v1/profiles/{p}")[1].get("events") == 2 for p in first), 30,
             lambda: str([get(port, f"/v1/profiles/{p}") for p in first]))

    # anon-a identifies as user-1, anon-b logs in as user-1: one merge. Both login events are
    # stamped with the pre-merge profiles, so the absorbed one's arrives at a tombstone or before it.
    pipeline.produce(pipeline.topics.clickstream, [
        record(identify("a3", "anon-a", "user-1", email="ann.lee@example.com")),
        record(event("b3", "anon-b", "page_view", user_id="user-1")),
    ])
    wait_for(lambda: profile_of(pipeline, "anon-a") == profile_of(pipeline, "anon-b"), 60,
             lambda: pipeline.workers[0][0].tail(80))
    survivor = str(profile_of(pipeline, "anon-a"))
    (absorbed,) = first - {survivor}
    assert absorbed is not None

    def served(pid: str) -> dict[str, Any]:
        return get(port, f"/v1/profiles/{pid}")[1]

    wait_for(lambda: served(survivor).get("events") == 6, 60,
             lambda: f"{served(survivor)}\n{pipeline.workers[0][0].tail(80)}")
    profile = served(survivor)
    assert profile["profile_id"] == survivor and "redirected_from" not in profile
    assert profile["session"]["open_sessions"] == 1 and profile["session"]["current"]["events"] == 6  # combined
    assert "highly_engaged" in profile["segments"]  # 4 product views together, 2 each apart

    wait_for(lambda: pipeline.redis.hget(f"persona:profile:{absorbed}", "merged_into") == survivor, 30,
             lambda: str(pipeline.redis.hgetall(f"persona:profile:{absorbed}")))
    status, redirected = get(port, f"/v1/profiles/{absorbed}")
    assert status == 200 and redirected["profile_id"] == survivor and redirected["redirected_from"] == [absorbed]
    assert redirected["events"] == 6

    changes: list[dict[str, Any]] = []

    def segment_changes() -> bool:
        changes[:] = pipeline.consume(pipeline.topics.segment_changes, expected=100, timeout=3)
        return any(c["profile_id"] == absorbed and c["change"] == "exited" for c in changes) and any(
            c["segment_id"] == "highly_engaged" for c in changes)

    wait_for(segment_changes, 30, lambda: str(changes))
    for change in changes:
        jsonschema.validate(change, schema("segment-changes"))
    exits = [c for c in changes if c["profile_id"] == absorbed and c["change"] == "exited"]
    assert {c["segment_id"] for c in exits} >= {"new_visitor"}
    assert all(c["reason"] == {"merged_into": survivor} for c in exits)
    (engaged,) = [c for c in changes if c["segment_id"] == "highly_engaged"]
    assert (engaged["profile_id"], engaged["change"]) == (survivor, "entered")
    for change in pipeline.consume(pipeline.topics.identity_changes, expected=1, timeout=5):
        jsonschema.validate(change, schema("identity-changes"))

    # Replays and duplicates: the merge change delivered again, a record stamped with the absorbed
    # id sent twice (the second is a publisher-side duplicate of the same event id).
    merged = [c for c in pipeline.consume(pipeline.topics.identity_changes, expected=1, timeout=5)
              if c["change"] == "merged"]
    assert len(merged) == 1
    profile_events = Settings.from_env(pipeline.env).profile_events_topic
    late = {"profile_id": absorbed, "ts": profile["last_seen"],
            "event": product_view("b4", "anon-b")}
    pipeline.produce(pipeline.topics.identity_changes, [(survivor.encode(), orjson.dumps(merged[0]))])
    pipeline.produce(profile_events, [(absorbed.encode(), orjson.dumps(late)), (absorbed.encode(), orjson.dumps(late))])
    wait_for(lambda: served(survivor).get("events") == 7, 30, lambda: str(served(survivor)))

    # Malformed records on the stage's inputs are dead-lettered; the stage goes on.
    pipeline.produce(profile_events, [(survivor.encode(), b'{"profile_id": "x", "merge_in": {}}')])
    pipeline.produce(pipeline.topics.identity_changes, [(b"x", b'{"change": "merged"}')])
    letters = pipeline.consume(pipeline.topics.dead_letters, expected=2, timeout=30)
    assert sorted(d["source"]["topic"] for d in letters) == sorted([profile_events, pipeline.topics.identity_changes])
    for letter in letters:
        jsonschema.validate(letter, schema("dead-letters"))

    # A CRM record with the same e-mail: its trait bands reach the survivor, nothing in clear.
    pipeline.produce(pipeline.topics.crm_profiles, [crm("crm-1", email="Ann.Lee@example.com", first_name="Ann",
                                                        date_of_birth="1990-06-01", city="Leeds", postcode="LS1 4AP")])
    wait_for(lambda: served(survivor).get("traits", {}).get("city") == "Leeds", 30,
             lambda: f"{served(survivor)}\n{pipeline.workers[0][0].tail(60)}")
    profile = served(survivor)
    assert profile["traits"]["age_band"] in {"25-34", "35-44"}
    assert profile["events"] == 7  # the duplicates and the replayed merge changed nothing
    text = json.dumps(profile)
    for clear in ("Ann", "ann.lee", "1990-06-01", "LS1", "anon-a"):
        assert clear not in text
    for summary in pipeline.consume(pipeline.topics.session_summaries, expected=100, timeout=2):
        jsonschema.validate(summary, schema("session-summaries"))

    # Redis loses everything: rebuild-redis restores the survivor and the absorbed id's marker.
    pipeline.redis.flushdb()
    rebuilt = subprocess.run([sys.executable, "-m", "app.cli", "rebuild-redis"], capture_output=True, text=True,
                             timeout=120, env={**os.environ, **pipeline.env})
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert pipeline.redis.hget(f"persona:profile:{absorbed}", "merged_into") == survivor
    status, redirected = get(port, f"/v1/profiles/{absorbed}")
    assert status == 200 and redirected["profile_id"] == survivor and redirected["events"] == 7


def test_an_operator_split_after_a_merge_gives_the_split_off_browser_its_own_profile_again(
    pipeline: Pipeline,
) -> None:
    own = profile_id_for(anon_hash("anon-t"))
    # A user id whose profile id sorts first, so the merge absorbs anon-t's profile (ids are stable
    # for the development secret). anon-s's first event carries it: its events are stamped with a
    # provisional id until the alias arrives, and that provisional state must reach the profile too.
    user = next(u for u in (f"user-{i}" for i in range(1000))
                if profile_id_for(keyed_hash(DEV_HMAC_SECRET, "user_id", u)) < own)
    _, port = pipeline.start_worker()
    pipeline.produce(pipeline.topics.clickstream, [record(event("t1", "anon-t"))])
    wait_for(lambda: profile_of(pipeline, "anon-t") == own, 60, lambda: pipeline.workers[0][0].tail(60))
    pipeline.produce(pipeline.topics.clickstream, [record(event("s1", "anon-s", user_id=user)),
                                                   record(event("t2", "anon-t", user_id=user))])
    wait_for(lambda: profile_of(pipeline, "anon-s") == profile_of(pipeline, "anon-t"), 60,
             lambda: pipeline.workers[0][0].tail(60))
    pid = str(profile_of(pipeline, "anon-s"))
    assert pid != own
    wait_for(lambda: get(port, f"/v1/profiles/{pid}")[1].get("events") == 3, 30,
             lambda: str(get(port, f"/v1/profiles/{pid}")))
    assert get(port, f"/v1/profiles/{own}")[1].get("redirected_from") == [own]

    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "identity", "split", "--profile", pid,
         "--a", keyed_hash(DEV_HMAC_SECRET, "user_id", user), "--b", anon_hash("anon-t")],
        env={**os.environ, **pipeline.env}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: profile_of(pipeline, "anon-t") != pid, 30, lambda: pipeline.workers[0][0].tail(60))
    assert profile_of(pipeline, "anon-t") == own  # the split-off part gets its old id back
    wait_for(lambda: "redirected_from" not in get(port, f"/v1/profiles/{own}")[1], 30,
             lambda: str(get(port, f"/v1/profiles/{own}")))
    pipeline.produce(pipeline.topics.clickstream, [record(event("t3", "anon-t"))])
    wait_for(lambda: get(port, f"/v1/profiles/{own}")[1].get("events") == 1, 30,
             lambda: f"{get(port, f'/v1/profiles/{own}')}\n{pipeline.workers[0][0].tail(60)}")
    # The merged history stays with the profile that kept its id (it cannot be attributed).
    assert get(port, f"/v1/profiles/{pid}")[1]["events"] == 3


def test_a_browser_that_logs_in_mid_burst_has_every_event_in_a_session_summary(pipeline: Pipeline) -> None:
    """Its first alias moves its provisional profile into a known customer's while the rest of the
    burst is being stamped: no event may reach that profile's sessions after they moved on."""
    _, port = pipeline.start_worker()
    pipeline.produce(pipeline.topics.clickstream, [record(identify("j1", "anon-j", "user-k", email="k@example.com"))])
    wait_for(lambda: profile_of(pipeline, "anon-j") is not None, 60, lambda: pipeline.workers[0][0].tail(60))
    customer = str(profile_of(pipeline, "anon-j"))

    burst = []
    for n, hours_ago in enumerate((10.0, 8.0, 6.0)):
        for i in range(8):
            extra: dict[str, Any] = {"user_id": "user-k"} if (n, i) == (0, 2) else {}
            burst.append(event(f"k{n}-{i}", "anon-k", timestamp=iso(hours_ago * 3600 - 60 * i), **extra))
    burst.append(event("k-now", "anon-k", timestamp=iso(30)))  # closes the three sessions by its time
    pipeline.produce(pipeline.topics.clickstream, [record(e) for e in burst])

    summaries = pipeline.consume(pipeline.topics.session_summaries, expected=3)
    assert sorted(s["events"] for s in summaries) == [8, 8, 8]
    # A session that closed before identity caught up is the provisional profile's; the profile
    # (which absorbed that one) ends with every event.
    assert {s["profile_id"] for s in summaries} <= {customer, profile_id_for(anon_hash("anon-k"))}
    wait_for(lambda: get(port, f"/v1/profiles/{customer}")[1].get("events") == 26, 30,
             lambda: str(get(port, f"/v1/profiles/{customer}")))
    assert pipeline.metric(port, "persona_session_late_events_total") == 0
