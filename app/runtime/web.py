"""HTTP views of every worker: ``/health/ready`` (and ``/health``), ``/health/live``, ``/metrics``,
event ingestion ``POST /v1/events``, profiles, segments."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import orjson
from aiohttp import web
from faust.web import Request, Response, View
from multidict import MultiMapping
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.exceptions import RedisError

from app.clusters import state as cluster_stage
from app.events import batch_records
from app.events.validation import Event, Rejection, processing_error
from app.identity.normalise import normalise_email, normalise_id, normalise_loyalty_id, normalise_phone
from app.profiles.state import default_rules
from app.runtime import health
from app.runtime.auth import ApiKey
from app.runtime.faust_app import clickstream_topic, faust_app, http_guard, resolver, settings, started_at, validator
from app.runtime.http_guard import KEY
from app.runtime.lifecycle import redis_healer, redis_sink
from app.runtime.metrics import HTTP_EVENTS
from app.runtime.settings import MAX_EVENTS_PER_REQUEST
from app.segments.listing import listing
from app.serving import keys as serving

MAX_BATCH = MAX_EVENTS_PER_REQUEST


def split_batch(body: Any) -> list[Any] | None:
    """The events of a request body: one object, an array, or ``{"events": [...]}``.

    >>> split_batch({"type": "page_view"})
    [{'type': 'page_view'}]
    >>> split_batch({"events": [1, 2]})
    [1, 2]
    >>> split_batch("nope") is None
    True
    """
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        events = body.get("events")
        return events if isinstance(events, list) else [body]
    return None


def judge(
    events: list[Any], now: float, max_record_bytes: int, key: ApiKey | None = None
) -> tuple[list[dict[str, Any]], list[Event]]:
    """Validate each event of a batch; return the per-event results and the accepted events.

    A key bound to event sources (``context.channel``) has the events of other channels
    rejected as ``source_not_allowed``.
    """
    results: list[dict[str, Any]] = []
    accepted: list[Event] = []
    for index, doc in enumerate(events):
        try:
            verdict = validator.clickstream_document(doc, now)
            if isinstance(verdict, Event) and len(orjson.dumps(doc)) > max_record_bytes:
                verdict = Rejection("record_too_large", f"event is larger than {max_record_bytes} bytes")
        except orjson.JSONEncodeError:  # read, but nested deeper than orjson writes
            verdict = Rejection("schema_violation", "the event is nested too deeply")
        except Exception as exc:  # the validator's own failure: this event is refused, the request goes on
            verdict = processing_error("http", exc)
        refusal = key.source_refusal(doc) if key is not None and isinstance(verdict, Event) else None
        if refusal is not None:
            verdict = Rejection("source_not_allowed", refusal, "context.channel")
        # Echoed back only as the string it must be: any other value could be anything (a 300-deep array).
        event_id = doc.get("event_id") if isinstance(doc, dict) else None
        event_id = event_id[:256] if isinstance(event_id, str) else None
        if isinstance(verdict, Rejection):
            results.append({"index": index, "event_id": event_id, "status": "rejected", "reason": verdict.as_dict()})
        else:
            results.append({"index": index, "event_id": event_id, "status": "accepted"})
            accepted.append(verdict)
    return results, accepted


def clickstream_records(accepted: list[Event], max_record_bytes: int, request_id: str) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of the clickstream records for a request's accepted events: a visitor's
    events as batch records (app/events/batch_records.py), one event alone as an event record.

    The worker applies a batch's events one by one, exactly as if each had come alone, but reads
    and writes the visitor's state once per record.

    >>> e = lambda i, anon: Event({"event_id": f"e{i}", "anonymous_id": anon}, "page_view", f"e{i}", anon, 0.0)
    >>> records = clickstream_records([e(1, "a"), e(2, "b"), e(3, "a")], 65536, "r1")
    >>> [(key, orjson.loads(value).get("batch_id")) for key, value in records]
    [(b'a', 'http-r1-a-0'), (b'b', None)]
    """
    by_visitor: dict[str, list[bytes]] = {}
    for event in accepted:
        by_visitor.setdefault(event.anonymous_id, []).append(orjson.dumps(event.data))
    records: list[tuple[bytes, bytes]] = []
    for visitor, values in by_visitor.items():
        for number, run in enumerate(batch_records.runs(values, max_record_bytes)):
            value = run[0] if len(run) == 1 else batch_records.encode(f"http-{request_id}-{visitor[:80]}-{number}", run)
            records.append((visitor.encode(), value))
    return records


def json_response(view: View, body: dict[str, Any], status: int) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


@faust_app.page("/v1/events")
class EventsView(View):
    """Publish events over HTTP; the worker validates and produces them to ``clickstream``."""

    async def post(self, request: Request) -> Response:
        raw = await http_guard.read_body(cast(web.Request, request))  # Faust's aiohttp driver
        if not isinstance(raw, bytes):
            return cast(Response, raw)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return json_response(self, {"error": f"body is not valid JSON: {exc}"}, 400)
        events = split_batch(body)
        if events is None:
            return json_response(self, {"error": 'body must be an event object, an array, or {"events": [...]}'}, 400)
        if len(events) > MAX_BATCH:
            return json_response(self, {"error": f"at most {MAX_BATCH} events per request"}, 413)
        key: ApiKey | None = cast(web.Request, request).get(KEY)
        refused = http_guard.charge(key, "ingest", len(events))
        if refused is not None:
            return cast(Response, refused)
        results, accepted = judge(events, time.time(), settings.max_record_bytes, key)
        deliveries = [
            await clickstream_topic.send(key=key, value=value)
            for key, value in clickstream_records(accepted, settings.max_record_bytes, uuid.uuid4().hex)
        ]
        # 202 means the broker has the accepted events, not merely that we do.
        await asyncio.gather(*deliveries)
        HTTP_EVENTS.labels("accepted").inc(len(accepted))
        HTTP_EVENTS.labels("rejected").inc(len(results) - len(accepted))
        # 400 when nothing of the request was valid: the results still say why, event by event.
        return json_response(
            self,
            {"accepted": len(accepted), "rejected": len(results) - len(accepted), "results": results},
            202 if accepted else 400,
        )


LOOKUP_TYPES: dict[str, Callable[[str], str | None]] = {
    "email": normalise_email,
    "phone": lambda raw: normalise_phone(raw, resolver.config.default_region.upper()),
    "loyalty_id": normalise_loyalty_id,
    "user_id": normalise_id,
    "anonymous_id": normalise_id,
    "device_id": normalise_id,
}


def decode_hash(fields: dict[str, str]) -> dict[str, Any]:
    """A Redis hash as JSON: fields written as JSON text are decoded, others kept as strings."""
    out: dict[str, Any] = {}
    for name, raw in fields.items():
        try:
            out[name] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[name] = raw
    return out


#: Most ``merged_into`` hops a profile request follows (a chain B -> A -> C is two).
MAX_MERGE_HOPS = 8


def merged_into(features: dict[str, str], identity: dict[str, str]) -> str | None:
    """Where an absorbed profile went, from either of its keys (the identity stage marks one
    at once, the profiles stage the other once the state has moved); ``None`` if not absorbed.

    >>> merged_into({}, {"merged_into": "p-a"}), merged_into({"events": "3"}, {})
    ('p-a', None)
    """
    return features.get("merged_into") or identity.get("merged_into") or None


async def profile_document(profile_id: str) -> dict[str, Any] | None:
    """The served profile from Redis: features, active session and identity; None if unknown.

    An absorbed profile answers with its survivor's document (following chains), which
    lists the absorbed ids it was reached through in ``redirected_from``.
    """
    client = redis_sink.client
    redirected_from: list[str] = []
    while True:
        # The sink's client decodes responses, so fields are str.
        features = cast("dict[str, str]", await client.hgetall(f"persona:profile:{profile_id}"))
        identity = cast("dict[str, str]", await client.hgetall(f"persona:profile:{profile_id}:identity"))
        if not features and not identity:
            # The survivor is not served yet: say where the absorbed profile went.
            return {"profile_id": redirected_from[-1], "merged_into": profile_id} if redirected_from else None
        target = merged_into(features, identity)
        if target is None or len(redirected_from) >= MAX_MERGE_HOPS or target in redirected_from:
            break
        redirected_from.append(profile_id)
        profile_id = target
    cluster = cast("dict[str, str]", await client.hgetall(f"persona:profile:{profile_id}:cluster"))
    document = {"profile_id": profile_id, **decode_hash(features), "identity": decode_hash(identity),
                "cluster": decode_hash(cluster) if cluster else None}
    if redirected_from:
        document["redirected_from"] = redirected_from
    return document


async def segment_sizes() -> dict[str, int]:
    """Segment id -> SCARD of its set, for every ``persona:segment:*`` set in Redis."""
    client = redis_sink.client
    keys = [k async for k in client.scan_iter(match=f"{serving.SEGMENT}*", count=1000)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.scard(key)
    sizes = await pipe.execute() if keys else []
    return {str(k).removeprefix(serving.SEGMENT): int(n) for k, n in zip(keys, sizes, strict=True)}


@faust_app.page("/v1/segments")
class SegmentsView(View):
    """``GET /v1/segments``: every segment, rule and cluster, with its label and its size (from Redis)."""

    async def get(self, request: Request) -> Response:
        try:
            clusters = decode_hash(cast("dict[str, str]", await redis_sink.client.hgetall(serving.CLUSTERS)))
            sizes = await segment_sizes()
        except (RedisError, OSError) as exc:
            return json_response(self, {"error": f"the serving store is unavailable: {exc}"}, 503)
        return json_response(self, {"segments": listing(default_rules(), clusters, sizes)}, 200)


@faust_app.page("/v1/profiles/lookup")
class ProfileLookupView(View):
    """``GET /v1/profiles/lookup?type=email&value=...``: the profile of an identifier, from Redis."""

    async def get(self, request: Request) -> Response:
        id_type, value = request.query.get("type", ""), request.query.get("value", "")
        normalise = LOOKUP_TYPES.get(id_type)
        if normalise is None:
            return json_response(self, {"error": f"type must be one of {sorted(LOOKUP_TYPES)}"}, 400)
        normalised = normalise(value)
        if not normalised:
            return json_response(self, {"error": f"{value!r} is not a valid {id_type}"}, 400)
        try:
            entry = await redis_sink.client.hgetall(f"persona:identity:{resolver.identifier_hash(id_type, normalised)}")
            document = await profile_document(str(entry["profile_id"])) if entry else None
        except (RedisError, OSError) as exc:
            return json_response(self, {"error": f"the serving store is unavailable: {exc}"}, 503)
        if document is None:
            return json_response(self, {"error": f"no profile for this {id_type}"}, 404)
        return json_response(self, document, 200)


@faust_app.page("/v1/profiles/{profile_id}")
class ProfileView(View):
    """``GET /v1/profiles/{profile_id}``: the current profile as Redis serves it."""

    async def get(self, request: Request, profile_id: str) -> Response:
        try:
            document = await profile_document(profile_id)
        except (RedisError, OSError) as exc:
            return json_response(self, {"error": f"the serving store is unavailable: {exc}"}, 503)
        if document is None:
            return json_response(self, {"error": f"no profile {profile_id!r}"}, 404)
        return json_response(self, document, 200)


@faust_app.page("/v1/clusters/model")
class ClusterModelView(View):
    """``GET /v1/clusters/model``: the live cluster model, on the worker that owns it (404 elsewhere)."""

    async def get(self, request: Request) -> Response:
        from agents import clusters  # registered before the views (app.runtime.faust_app.COMPONENT_MODULES)

        state = clusters.owned_model()
        if state is None:
            return json_response(self, {"error": "this worker does not hold the cluster model"}, 404)
        return json_response(self, cluster_stage.describe(state), 200)


async def readiness_body() -> tuple[dict[str, Any], int]:
    """The body and status of ``/health/ready``: 503 with each problem's stage and reason while a table
    recovers, an agent has crashed or stopped, or a stage is stalled with lag (app/runtime/health.py)."""
    from app.runtime import health_probe  # registered after the views (app.runtime.faust_app.COMPONENT_MODULES)

    verdict, facts = health_probe.check()
    redis_up = await redis_sink.ping()
    body = {
        "status": verdict.status,
        "ready": verdict.ready,
        "problems": [problem.as_dict() for problem in verdict.problems],
        "stages": {stage.stage: health.stage_state(stage, settings.stall_seconds) for stage in facts},
        "redis": "up" if redis_up else "down",
        "redis_pending": redis_sink.pending,
        "redis_lag_seconds": round(redis_sink.lag_seconds(), 3),
        "redis_rebuild_partitions_queued": len(redis_healer.queue),
        "uptime_seconds": round(time.time() - started_at, 1),
    }
    return body, 200 if verdict.ready else 503


@faust_app.page("/health/ready")
class ReadyView(View):
    """``GET /health/ready``: 200 when the worker can do its work, 503 with the stage and the reason otherwise."""

    async def get(self, request: Request) -> Response:
        body, status = await readiness_body()
        return json_response(self, body, status)


@faust_app.page("/health")
class HealthView(View):
    """``GET /health``: the same answer as ``/health/ready`` (kept for existing probes)."""

    async def get(self, request: Request) -> Response:
        body, status = await readiness_body()
        return json_response(self, body, status)


@faust_app.page("/health/live")
class LiveView(View):
    """``GET /health/live``: 200 while the worker's event loop answers (process liveness)."""

    async def get(self, request: Request) -> Response:
        return json_response(self, {"status": "alive", "uptime_seconds": round(time.time() - started_at, 1)}, 200)


@faust_app.page("/metrics")
class MetricsView(View):
    async def get(self, request: Request) -> Response:
        # ``?name[]=<sample name>`` (repeatable) answers those samples only, as the Prometheus
        # client's own exposition does: a frequent poller (the bench's drain, every 0.1 s) then
        # does not pay for formatting every metric of the worker on its event loop.
        names = cast("MultiMapping[str]", request.query).getall("name[]", [])  # aiohttp's MultiDict
        registry = REGISTRY.restricted_registry(names) if names else REGISTRY
        # The full type with its version and charset: Prometheus 3 refuses a bare text/plain.
        return self.bytes(generate_latest(registry), status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})
