"""API keys, scopes, event-source binding and rate limits of the worker's HTTP API (pure logic).

A key is configured in ``PERSONA_API_KEYS`` as one compact entry per key, entries separated by
``;`` (or whitespace)::

    NAME:SCOPES:SOURCES:SALT:HASH

``NAME`` is ``[A-Za-z0-9_-]``; ``SCOPES`` a comma list of ``ingest``, ``read``, ``admin``;
``SOURCES`` a comma list of event channels (``web``, ``app``, ``email``, ``call_centre``,
``pos``) the key may post, or ``*`` for any; ``SALT`` and ``HASH`` hex, the hash being
HMAC-SHA256(key=salt, token). ``persona keys create`` makes a token and its entry. A token is
``NAME.SECRET``: the name picks the one entry to check.

Why not a slow key derivation (scrypt, PBKDF2): those protect low-entropy passwords from
guessing once their hashes leak. A token's secret is 256 random bits, which no guessing reaches
with any hash, and a slow hash would let anyone who sends made-up tokens spend the worker's CPU
(tens of ms each). A salted fast hash costs about a microsecond to check, for a valid token or not.

Examples
--------
>>> key = new_key("site", ["ingest"], ["web"])
>>> ring = KeyRing(parse_keys(key.entry))
>>> ring.verify(key.token).name, ring.verify("site.wrong"), ring.verify("nobody.x")
('site', None, None)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.errors import ConfigError

SCOPES = ("ingest", "read", "admin")
CHANNELS = ("web", "app", "email", "call_centre", "pos")
#: What a route needs beyond a valid key: any key at all (monitoring endpoints when closed).
ANY_KEY = "any"
#: Endpoint groups ``PERSONA_OPEN_ENDPOINTS`` may leave open.
OPEN_GROUPS = ("health", "metrics")
HASH_BYTES, SALT_BYTES = 32, 16
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name, scopes, allowed event channels (empty: any), salt and hash."""

    name: str
    scopes: frozenset[str]
    sources: frozenset[str]
    salt: bytes
    digest: bytes

    def allows(self, needed: str | None) -> bool:
        """Whether this key may call a route that needs scope ``needed`` (``None``: open route).

        >>> k = ApiKey("k", frozenset({"read"}), frozenset(), b"", b"")
        >>> k.allows("read"), k.allows("ingest"), k.allows(ANY_KEY), k.allows(None)
        (True, False, True, True)
        >>> ApiKey("a", frozenset({"admin"}), frozenset(), b"", b"").allows("ingest")
        True
        """
        return needed in (None, ANY_KEY) or "admin" in self.scopes or needed in self.scopes

    def source_refusal(self, event: object) -> str | None:
        """Why this key may not post ``event`` (by its ``context.channel``); ``None`` if it may.

        >>> web = ApiKey("site", frozenset({"ingest"}), frozenset({"web"}), b"", b"")
        >>> web.source_refusal({"context": {"channel": "web"}}) is None
        True
        >>> web.source_refusal({"context": {"channel": "pos"}})
        "key 'site' may post events of channel web only, this one has channel 'pos'"
        >>> web.source_refusal({"type": "page_view"})
        "key 'site' may post events of channel web only, this one has no context.channel"
        """
        if not self.sources:
            return None
        context = event.get("context") if isinstance(event, dict) else None
        channel = context.get("channel") if isinstance(context, dict) else None
        if isinstance(channel, str) and channel in self.sources:
            return None
        said = f"channel {channel!r}" if channel is not None else "no context.channel"
        allowed = ", ".join(sorted(self.sources))
        return f"key {self.name!r} may post events of channel {allowed} only, this one has {said}"


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: the token (shown once) and the entry to put in ``PERSONA_API_KEYS``."""

    token: str
    entry: str


def derive(token: str, salt: bytes) -> bytes:
    """The salted hash of ``token``: HMAC-SHA256 keyed by ``salt`` (see the module docstring for why fast)."""
    return hmac.new(salt, token.encode(), hashlib.sha256).digest()


def new_key(name: str, scopes: Iterable[str], sources: Iterable[str] = ()) -> NewKey:
    """Make a random token for a key and its config entry (validated as :func:`parse_keys` does).

    >>> made = new_key("ops", ["admin"])
    >>> made.token.startswith("ops.") and made.entry.startswith("ops:admin:*:")
    True
    >>> new_key("ops", ["root"])
    Traceback (most recent call last):
    ...
    app.errors.ConfigError: API key 'ops': unknown scope 'root' (scopes: ingest, read, admin)
    """
    token = f"{name}.{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(SALT_BYTES)
    entry = f"{name}:{','.join(scopes)}:{','.join(sources) or '*'}:{salt.hex()}:{derive(token, salt).hex()}"
    parse_keys(entry)
    return NewKey(token, entry)


def parse_keys(text: str) -> tuple[ApiKey, ...]:
    """The keys of a ``PERSONA_API_KEYS`` value; ConfigError naming the entry at fault.

    >>> [k.name for k in parse_keys("a:read:*:00ff:" + "ab" * 32 + " ; b:ingest:web,app:01:" + "cd" * 32)]
    ['a', 'b']
    >>> parse_keys("")
    ()
    >>> parse_keys("a:read:*:00ff")
    Traceback (most recent call last):
    ...
    app.errors.ConfigError: PERSONA_API_KEYS entry 1 must be NAME:SCOPES:SOURCES:SALT:HASH (persona keys create)
    >>> parse_keys("a:read:fax:00:" + "ab" * 32)
    Traceback (most recent call last):
    ...
    app.errors.ConfigError: API key 'a': unknown source 'fax' (channels: web, app, email, call_centre, pos, or *)
    """
    keys: list[ApiKey] = []
    for number, entry in enumerate(re.split(r"[;\s]+", text.strip()) if text.strip() else [], start=1):
        parts = entry.split(":")
        if len(parts) != 5:
            raise ConfigError(
                f"PERSONA_API_KEYS entry {number} must be NAME:SCOPES:SOURCES:SALT:HASH (persona keys create)"
            )
        name, scopes, sources, salt, digest = parts
        keys.append(_key(number, name, scopes, sources, salt, digest))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ConfigError(f"PERSONA_API_KEYS names a key twice: {sorted({n for n in names if names.count(n) > 1})}")
    return tuple(keys)


def _key(number: int, name: str, scopes: str, sources: str, salt: str, digest: str) -> ApiKey:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"PERSONA_API_KEYS entry {number}: the name must be 1-64 of A-Z a-z 0-9 _ -, got {name!r}")
    scope_set = frozenset(s for s in scopes.split(",") if s)
    unknown = sorted(scope_set - set(SCOPES))
    if unknown:
        raise ConfigError(f"API key {name!r}: unknown scope {unknown[0]!r} (scopes: {', '.join(SCOPES)})")
    if not scope_set:
        raise ConfigError(f"API key {name!r}: no scope (scopes: {', '.join(SCOPES)})")
    source_set = frozenset() if sources == "*" else frozenset(s for s in sources.split(",") if s)
    unknown = sorted(source_set - set(CHANNELS))
    if unknown:
        raise ConfigError(f"API key {name!r}: unknown source {unknown[0]!r} (channels: {', '.join(CHANNELS)}, or *)")
    if not _HEX.fullmatch(salt) or not _HEX.fullmatch(digest) or len(digest) != 2 * HASH_BYTES:
        raise ConfigError(f"API key {name!r}: salt and hash must be lower-case hex, the hash {HASH_BYTES} bytes")
    return ApiKey(name, scope_set, source_set, bytes.fromhex(salt), bytes.fromhex(digest))


class KeyRing:
    """The configured keys.

    A token names its key (``name.secret``), so one salted hash is computed per request, and
    none for a token whose name is no key's. No memory of tokens verified before: the hash is
    a single HMAC, cheaper than looking a token up in such a memory would be.

    >>> key = new_key("app", ["read"])
    >>> ring = KeyRing(parse_keys(key.entry))
    >>> ring.verify(key.token).name, ring.verify("app.forged"), ring.verify("nobody.x")
    ('app', None, None)
    """

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys: Mapping[str, ApiKey] = {k.name: k for k in keys}

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (without keys the API is open: loopback only)."""
        return bool(self.keys)

    def verify(self, token: str) -> ApiKey | None:
        """The key ``token`` belongs to, or ``None`` (the hashes compared in constant time)."""
        # Tokens are ASCII; a header's invalid UTF-8 arrives as lone surrogates, which .encode() refuses.
        candidate = self.keys.get(token.split(".", 1)[0]) if "." in token and token.isascii() else None
        if candidate is None:
            return None
        return candidate if hmac.compare_digest(derive(token, candidate.salt), candidate.digest) else None


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``.

    >>> bearer_token("Bearer abc.def"), bearer_token("bearer  abc "), bearer_token("Basic x"), bearer_token(None)
    ('abc.def', 'abc', None, None)
    """
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def requirement(method: str, path: str, open_groups: Iterable[str]) -> str | None:
    """What a request needs: ``None`` (open), :data:`ANY_KEY`, or a scope.

    >>> requirement("GET", "/health/ready", ["health", "metrics"]) is None
    True
    >>> requirement("GET", "/metrics", ["health"]), requirement("POST", "/v1/events", [])
    ('any', 'ingest')
    >>> requirement("GET", "/v1/profiles/lookup", []), requirement("DELETE", "/v1/profiles/p1", [])
    ('read', 'admin')
    """
    group = "health" if path == "/health" or path.startswith("/health/") else "metrics" if path == "/metrics" else None
    if group is not None:
        return None if group in open_groups else ANY_KEY
    if path == "/v1/events":
        return "ingest" if method == "POST" else "admin"
    if path.startswith("/v1/") and method in ("GET", "HEAD"):
        return "read"
    return "admin"


def parse_open_groups(text: str) -> tuple[str, ...]:
    """The endpoint groups of ``PERSONA_OPEN_ENDPOINTS``: a comma list of health and metrics, or ``none``.

    >>> parse_open_groups("health,metrics"), parse_open_groups("none")
    (('health', 'metrics'), ())
    >>> parse_open_groups("health,admin")
    Traceback (most recent call last):
    ...
    app.errors.ConfigError: PERSONA_OPEN_ENDPOINTS lists 'admin'; it may list health, metrics, or be none
    """
    groups = tuple(g.strip() for g in text.split(",") if g.strip() and g.strip() != "none")
    for group in groups:
        if group not in OPEN_GROUPS:
            raise ConfigError(f"PERSONA_OPEN_ENDPOINTS lists {group!r}; it may list health, metrics, or be none")
    return groups


@dataclass(frozen=True)
class Bucket:
    """A token bucket's state: tokens left at monotonic time ``at``."""

    tokens: float
    at: float


def take(bucket: Bucket | None, cost: float, now: float, rate: float, burst: float) -> tuple[Bucket, float]:
    """Try to spend ``cost`` tokens; return the new state and 0, or the unchanged state and the
    seconds until the cost is available (``rate`` tokens a second refill, at most ``burst`` held).

    A new bucket (``None``) starts full. A cost above the burst can never be paid: ``inf``.

    >>> b, wait = take(None, 2, now=0.0, rate=1.0, burst=2)
    >>> b, wait
    (Bucket(tokens=0.0, at=0.0), 0.0)
    >>> take(b, 1, now=0.25, rate=1.0, burst=2)[1]
    0.75
    >>> take(b, 1, now=1.0, rate=1.0, burst=2)
    (Bucket(tokens=0.0, at=1.0), 0.0)
    >>> take(b, 3, now=9.0, rate=1.0, burst=2)[1]
    inf
    """
    tokens = float(burst) if bucket is None else min(burst, bucket.tokens + (now - bucket.at) * rate)
    if cost <= tokens:
        return Bucket(tokens - cost, now), 0.0
    if cost > burst or rate <= 0:
        return Bucket(tokens, now), math.inf
    return Bucket(tokens, now), (cost - tokens) / rate


def retry_after(wait: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1.

    >>> retry_after(0.2), retry_after(2.01), retry_after(math.inf)
    ('1', '3', '3600')
    """
    return str(max(1, min(3600, math.ceil(wait)))) if math.isfinite(wait) else "3600"


def is_loopback(host: str) -> bool:
    """Whether a bind address only reaches this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    >>> is_loopback("worker-1"), is_loopback("")
    (False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_refusal(
    web_host: str, keys_configured: bool, hmac_secret: str, dev_secret: str, embedded: bool
) -> str | None:
    """Why a worker must not start with this configuration (one line), or ``None``.

    >>> startup_refusal("127.0.0.1", False, "s" * 32, "dev", embedded=False) is None
    True
    >>> startup_refusal("0.0.0.0", False, "s" * 32, "dev", embedded=False)[:66]
    'refusing to serve on 0.0.0.0 (not a loopback address) without API '
    >>> startup_refusal("0.0.0.0", True, "dev", "dev", embedded=False)[:71]
    'refusing the development default PERSONA_HMAC_SECRET outside the embedd'
    >>> startup_refusal("127.0.0.1", False, "dev", "dev", embedded=True) is None
    True
    """
    if not keys_configured and not is_loopback(web_host):
        return (
            f"refusing to serve on {web_host} (not a loopback address) without API keys: set PERSONA_API_KEYS "
            "(see 'persona keys create') or PERSONA_WEB_HOST=127.0.0.1"
        )
    if hmac_secret == dev_secret and not embedded:
        return (
            "refusing the development default PERSONA_HMAC_SECRET outside the embedded stack: set "
            "PERSONA_HMAC_SECRET to a secret of your own (e.g. 'openssl rand -hex 32')"
        )
    return None
