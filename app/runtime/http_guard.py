"""The worker's HTTP front door: only the product's routes, API keys and scopes, rate limits,
body limits, read timeouts and one-line logs of malformed requests.

The decisions are pure functions of :mod:`app.runtime.auth`; this module applies them to aiohttp
requests. :class:`PersonaWeb` is the Faust web driver without Faust's own views
(``/``, ``/router/``, ``/table/``, ``/graph/``, ``/stats/``...): those expose table contents,
customer identities among them, to anyone who reaches the port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson
from aiohttp import http_exceptions, web
from aiohttp.web_urldispatcher import SystemRoute
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from app.runtime import auth
from app.runtime.metrics import HTTP_REFUSED
from app.runtime.settings import Settings

#: Where the middleware leaves the request's key for the views (``request[KEY]``; ``None`` without keys).
KEY = "persona.api_key"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


class PersonaWeb(AiohttpWeb):
    """Faust's aiohttp driver serving only the views the application registers."""

    default_blueprints: ClassVar[Any] = ()
    production_blueprints: ClassVar[Any] = ()
    debug_blueprints: ClassVar[Any] = ()
    optional_blueprints: ClassVar[Any] = ()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error response ``{"error": message}`` of a refused request (counted by status)."""
    HTTP_REFUSED.labels(str(status)).inc()
    return web.Response(
        body=orjson.dumps({"error": message}), status=status, content_type="application/json", headers=headers
    )


class OneLineFraming(logging.Filter):
    """Turns aiohttp's traceback for a malformed request (bad framing, over-long line...) into one
    WARNING line; every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, http_exceptions.HttpProcessingError):
            record.msg = f"malformed HTTP request from %s: {type(exc).__name__}: {exc.message}"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


class HttpGuard:
    """Keys, scopes and per-key token buckets of one worker (from its settings)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ring = auth.KeyRing(auth.parse_keys(settings.api_keys))
        self.open_groups = auth.parse_open_groups(settings.open_endpoints)
        self.limits = {
            "read": (settings.read_rate, float(settings.read_burst)),
            "ingest": (settings.ingest_rate, float(settings.ingest_burst)),
        }
        self.buckets: dict[tuple[str, str], auth.Bucket] = {}

    @property
    def body_limit(self) -> int:
        """Largest ``POST /v1/events`` body, in bytes."""
        return self.settings.max_record_bytes * 64

    def application_options(self) -> dict[str, Any]:
        """Faust's ``web_application_options``: the aiohttp application and its connection handler."""
        logging.getLogger("aiohttp.server").addFilter(OneLineFraming())
        return {
            "middlewares": [self.middleware()],
            # One byte more than ours, so a too-large chunked body reaches our own 413.
            "client_max_size": self.body_limit + 1,
            "handler_args": {
                # aiohttp closes a connection whose request has not arrived within its keep-alive
                # timeout (started at connect): the header read timeout, and the idle timeout.
                "keepalive_timeout": self.settings.header_timeout_seconds,
                # How long an unread body is drained after the answer before the connection closes.
                "lingering_time": self.settings.body_timeout_seconds,
            },
        }

    def charge(self, key: auth.ApiKey | None, kind: str, cost: float) -> web.Response | None:
        """Spend ``cost`` from the key's ``kind`` bucket; a 429 response if it cannot pay."""
        rate, burst = self.limits[kind]
        if key is None or rate <= 0:
            return None
        bucket, wait = auth.take(self.buckets.get((key.name, kind)), cost, time.monotonic(), rate, burst)
        self.buckets[(key.name, kind)] = bucket
        if not wait:
            return None
        return error(
            429,
            f"rate limit of key {key.name!r} for {kind}: {rate:g}/s, at most {burst:g} at once; retry later",
            {"Retry-After": auth.retry_after(wait)},
        )

    async def identify(self, request: web.Request, needed: str | None) -> auth.ApiKey | web.Response | None:
        """The request's key, ``None`` if the route is open or no keys are configured, or a 401/403."""
        if needed is None or not self.ring.enabled:
            return None
        token = auth.bearer_token(request.headers.get("Authorization"))
        key = None
        if token is not None:
            key = self.ring.verify(token)
        if key is None:
            message = "a valid API key is required: Authorization: Bearer <token>"
            return error(401, message, {"WWW-Authenticate": 'Bearer realm="persona"'})
        if not key.allows(needed):
            return error(403, f"key {key.name!r} lacks the {needed!r} scope for {request.method} {request.path}")
        return key

    def middleware(self) -> Middleware:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            route = request.match_info.route
            if isinstance(route, SystemRoute):  # no such route (404) or method (405)
                return error(route.status, f"{request.method} {request.path}: {route.reason.lower()}")
            pattern = route.resource.canonical if route.resource else request.path
            needed = auth.requirement(request.method, pattern, self.open_groups)
            key = await self.identify(request, needed)
            if isinstance(key, web.Response):
                return key
            request[KEY] = key
            if needed == "read":
                refused = self.charge(key, "read", 1)
                if refused is not None:
                    return refused
            return await handler(request)

        return guard

    async def read_body(self, request: web.Request) -> bytes | web.Response:
        """The body of a JSON request, or the JSON error to answer (415, 413, 408)."""
        if request.content_type != "application/json":
            return error(415, f"Content-Type must be application/json, got {request.content_type!r}")
        if request.content_length is not None and request.content_length > self.body_limit:
            return error(413, f"body larger than {self.body_limit} bytes")
        try:
            raw = await asyncio.wait_for(request.read(), self.settings.body_timeout_seconds)
        except TimeoutError:
            response = error(408, f"the body did not arrive within {self.settings.body_timeout_seconds:g} s")
            response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body larger than {self.body_limit} bytes")
        if len(raw) > self.body_limit:
            return error(413, f"body larger than {self.body_limit} bytes")
        return raw
