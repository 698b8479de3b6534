"""Sessions per profile: event-time sessionization with allowed lateness, and session summaries.

Pure functions over one profile's state (keyed by ``profile_id``); the Faust table
and the timer live in the shell. Output records follow
``schemas/session-summaries.v1.json`` (:func:`summary`).

Rules (all times are event times, epoch seconds; :class:`SessionConfig`)
-----------------------------------------------------------------------
* **Inactivity.** Two events of a profile are in one session when they are
  linked by a chain of events each at most ``gap`` (default 30 min) apart.
* **Maximum length.** A session spans less than ``max_length`` (default 4 h)
  from its start. An event at or after ``start + max_length`` that would
  otherwise extend the session starts a new one, and the full session closes
  with ``close_reason = "max_length"``.
* **Watermark and closing.** A profile's *watermark* is the newest event time it
  has seen. A session closes (and its summary is emitted, once) when the
  watermark passes its *expiry* plus ``lateness`` (default 5 min), where the expiry
  is ``end + gap`` (``close_reason = "inactivity"``) or ``start + max_length`` for a
  full session (``"max_length"``). :func:`close_expired` applies the same rule
  with a clock ``now``, for a timer that closes sessions of customers who never
  come back.
* **Late events.** An event after ``closed_bound`` (below) is placed exactly,
  whatever its arrival order: it extends, starts, or bridges (merges) open
  sessions, and the session's landing page,
  referrer, UTM and device are those of its earliest event. In particular every
  event at most ``lateness`` behind the watermark is placed exactly, so session
  boundaries do not depend on the order of events within the lateness (as long
  as no session reaches ``max_length``, whose cut depends on what arrived first).
* **Beyond lateness.** An event at or before ``closed_bound`` would belong to, or
  precede, a session already emitted: ``closed_bound`` is the largest, over closed
  sessions, of ``end + gap`` (``end`` for a session cut at maximum length).
  Closed sessions are never reopened or re-emitted: the event is counted in the
  state's ``late`` counter, outcome ``"late"``, and attributed to no session.
  Other per-profile tables (profile, features) still apply it.

Exactness: the state carries the source ``offset`` of the last event applied
(replays are skipped) and the last ``dedup_window`` event ids (publisher retries
count once), as in :mod:`app.ingest.activity`. Revenue is kept in integer cents so
merges are exact and associative.

State shape (plain JSON)::

    {"open": [session, ...],   # sorted by start; at most a few
     "closed_bound": float | None, "watermark": float | None,
     "late": int, "closed": int, "offset": int,
     "recent_ids": str}          # packed digests (app.events.dedupe); absent in the profiles
                                 # stage, whose profile part keeps them for both parts

    session = {"id", "start", "end", "events", "pages", "products", "categories",
               "adds", "removes", "checkout", "purchased", "revenue_cents",
               "device", "entry_ts", "landing", "referrer", "utm", "full"}

Examples
--------
>>> cfg = SessionConfig(gap=1800, max_length=4 * 3600, lateness=300)
>>> s = None
>>> s, out, closed = apply(s, ev("e1", 1000.0, "page_view", page_url="https://x/"), 1, cfg)
>>> s, out, closed = apply(s, ev("e2", 1600.0, "product_view", product_id="p1", category="toys"), 2, cfg)
>>> [(x["start"], x["end"], x["events"]) for x in s["open"]], out
([(1000.0, 1600.0, 2)], 'applied')
>>> s, out, closed = apply(s, ev("e3", 9000.0, "page_view"), 3, cfg)   # 2 h later: new session
>>> [summary(c, "p-1")["duration_seconds"] for c in closed], closed[0]["close_reason"]
([600.0], 'inactivity')
>>> apply(s, ev("e0", 1200.0, "page_view"), 4, cfg)[1]   # belongs to the emitted session
'late'
>>> apply(s, ev("e3", 9000.0, "page_view"), 3, cfg)[1]   # replay of offset 3
'replayed'
>>> s, closed = close_expired(s, now=20000.0, config=cfg)
>>> [(c["start"], c["close_reason"]) for c in closed], s["open"]
([(9000.0, 'inactivity')], [])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit

from app.events import dedupe
from app.events.validation import Event
from tables.hooks import KeepOnSplit, State, register

Outcome = Literal["applied", "replayed", "duplicate_event_id", "late"]
Session = dict[str, Any]

UTM_KEYS: Final = ("source", "medium", "campaign", "term", "content")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Sessionization parameters (seconds unless said otherwise).

    ``max_products`` / ``max_categories`` bound the distinct products and
    categories kept per session (the first seen, by merge order); ``dedup_window``
    is the number of recent event ids kept to drop publisher retries.
    """

    gap: float = 1800.0
    max_length: float = 4 * 3600.0
    lateness: float = 300.0
    max_products: int = 50
    max_categories: int = 20
    dedup_window: int = 64

    def __post_init__(self) -> None:
        if not (self.gap > 0 and self.lateness >= 0 and self.max_length > self.gap):
            raise ValueError("need gap > 0, lateness >= 0 and max_length > gap")
        if self.max_products < 1 or self.max_categories < 1 or self.dedup_window < 1:
            raise ValueError("max_products, max_categories and dedup_window must be at least 1")


DEFAULT_CONFIG: Final = SessionConfig()


def new_state() -> State:
    return {"open": [], "closed_bound": None, "watermark": None, "late": 0, "closed": 0,
            "offset": -1}


def ev(event_id: str, ts: float, event_type: str = "page_view", *, page_url: str | None = None,
       **properties: Any) -> Event:
    """A minimal valid :class:`Event` (for examples and tests)."""
    data: dict[str, Any] = {"event_id": event_id, "type": event_type, "anonymous_id": "a",
                            "properties": properties, "context": {}}
    if page_url is not None:
        data["context"]["page_url"] = page_url
    return Event(data, event_type, event_id, "a", ts)


# --------------------------------------------------------------------------- one event


def _new_session(event: Event) -> Session:
    ts = event.ts
    s: Session = {"id": f"ses-{event.event_id}", "start": ts, "end": ts, "events": 0, "pages": 0,
                  "products": [], "categories": [], "adds": 0, "removes": 0, "checkout": False,
                  "purchased": False, "revenue_cents": 0, "device": None, "entry_ts": None,
                  "landing": None, "referrer": None, "utm": None, "full": False}
    return s


def _add_unique(items: list[str], value: Any, bound: int) -> list[str]:
    if not isinstance(value, str) or value in items or len(items) >= bound:
        return items
    return [*items, value]


def _cents(value: Any) -> int:
    return round(value * 100) if isinstance(value, int | float) and math.isfinite(value) else 0


def _fold(s: Session, event: Event, config: SessionConfig) -> Session:
    """``s`` (a copy owned by the caller) with ``event`` added; lists are replaced, not mutated."""
    ts = event.ts
    data = event.data
    kind = event.type
    props = data.get("properties") or {}
    context = data.get("context") or {}
    s["events"] += 1
    if ts < s["start"] or s["events"] == 1:
        s["start"] = ts
        device = context.get("device")
        s["device"] = device.get("type") if isinstance(device, dict) else None
    if ts > s["end"]:
        s["end"] = ts
    page_url = context.get("page_url")
    if page_url is not None and (s["entry_ts"] is None or ts < s["entry_ts"]):
        s["entry_ts"] = ts
        s["landing"] = page_url
        s["referrer"] = context.get("referrer")
        s["utm"] = _utm(context.get("utm"), page_url)
    if kind == "page_view":
        s["pages"] += 1
    elif kind == "product_view":
        s["products"] = _add_unique(s["products"], props.get("product_id"), config.max_products)
        s["categories"] = _add_unique(s["categories"], props.get("category"), config.max_categories)
    elif kind == "add_to_cart":
        s["adds"] += 1
        s["categories"] = _add_unique(s["categories"], props.get("category"), config.max_categories)
    elif kind == "remove_from_cart":
        s["removes"] += 1
    elif kind == "checkout_start":
        s["checkout"] = True
    elif kind == "purchase":
        s["checkout"] = True
        s["purchased"] = True
        s["revenue_cents"] += _cents(props.get("revenue"))
    return s


def _utm(utm: Any, page_url: str) -> dict[str, str] | None:
    """UTM of the landing hit: the context's, else the ``utm_*`` query parameters of its URL."""
    if isinstance(utm, dict) and utm:
        return {k: v for k, v in utm.items() if isinstance(v, str)}
    if "utm_" not in page_url:
        return None
    found = {k[4:]: v for k, v in parse_qsl(urlsplit(page_url).query) if k[4:] in UTM_KEYS and k.startswith("utm_")}
    return found or None


def _combine(a: Session, b: Session, config: SessionConfig) -> Session:
    """One session from two; ``a`` comes first (earlier start, or the survivor on a tie)."""
    first, other = (a, b) if a["start"] <= b["start"] else (b, a)
    entry = a if a["entry_ts"] is not None and (b["entry_ts"] is None or a["entry_ts"] <= b["entry_ts"]) else b
    products = a["products"]
    for p in b["products"]:
        products = _add_unique(products, p, config.max_products)
    categories = a["categories"]
    for c in b["categories"]:
        categories = _add_unique(categories, c, config.max_categories)
    return {
        "id": first["id"], "start": first["start"], "end": max(a["end"], b["end"]),
        "events": a["events"] + b["events"], "pages": a["pages"] + b["pages"],
        "products": products, "categories": categories,
        "adds": a["adds"] + b["adds"], "removes": a["removes"] + b["removes"],
        "checkout": a["checkout"] or b["checkout"], "purchased": a["purchased"] or b["purchased"],
        "revenue_cents": a["revenue_cents"] + b["revenue_cents"],
        "device": first["device"] if first["device"] is not None else other["device"],
        "entry_ts": entry["entry_ts"], "landing": entry["landing"], "referrer": entry["referrer"],
        "utm": entry["utm"], "full": a["full"] or b["full"],
    }


def _accepts(s: Session, ts: float, config: SessionConfig) -> bool:
    """Whether ``ts`` joins ``s`` (within ``gap`` of it and keeping it under ``max_length``)."""
    if s["full"] and ts >= s["start"] + config.max_length:
        return False
    # Differences, not sums: `ts <= end + gap` and `start - end <= gap` (used when sessions
    # combine) can disagree by a rounding error at exactly `gap` apart, and then the arrival
    # order would decide a boundary.
    return (s["start"] - ts <= config.gap and ts - s["end"] <= config.gap
            and max(s["end"], ts) - min(s["start"], ts) < config.max_length)


def _expiry(s: Session, config: SessionConfig) -> float:
    """Event time after which ``s`` can take no more events: it closes ``lateness`` later."""
    return s["start"] + config.max_length if s["full"] else s["end"] + config.gap


def _late_bound(s: Session, config: SessionConfig) -> float:
    """Once ``s`` is closed, an event at or before this time is late.

    ``end + gap`` (such an event would have extended ``s``); for a session cut at
    maximum length, its ``end``: a later event goes to the session that follows.
    """
    return s["end"] if s["full"] else s["end"] + config.gap


def _place(opens: list[Session], event: Event, config: SessionConfig) -> list[Session]:
    ts = event.ts
    gap = config.gap
    if len(opens) == 1 and _accepts(opens[0], ts, config):  # the common case: one open session, joined
        return [_fold(dict(opens[0]), event, config)]
    joins = [i for i, s in enumerate(opens) if _accepts(s, ts, config)]
    if not joins:
        result = list(opens)
        for i, s in enumerate(opens):
            if 0 < ts - s["end"] <= gap and not s["full"]:
                result[i] = {**s, "full": True}  # ts is past its maximum length: s ends here
        result.append(_fold(_new_session(event), event, config))
        result.sort(key=_start_key)
        return result
    if len(joins) > 1:
        merged = opens[joins[0]]
        for i in joins[1:]:
            merged = _combine(merged, opens[i], config)
        if merged["end"] - merged["start"] < config.max_length and max(ts, merged["end"]) - min(
            ts, merged["start"]
        ) < config.max_length:
            taken = set(joins)
            result = [s for i, s in enumerate(opens) if i not in taken]
            result.append(_fold(dict(merged), event, config))
            result.sort(key=_start_key)
            return result
    i = joins[0]
    result = list(opens)
    result[i] = _fold(dict(opens[i]), event, config)
    return result


def _start_key(s: Session) -> tuple[float, str]:
    return (s["start"], s["id"])


def _close(state: State, clock: float, config: SessionConfig) -> tuple[list[Session], list[Session], float | None]:
    """Split ``state["open"]`` into (still open, closed) at ``clock``; the new closed bound."""
    keep: list[Session] = []
    closed: list[Session] = []
    bound = state["closed_bound"]
    lateness = config.lateness
    for s in state["open"]:
        if clock > _expiry(s, config) + lateness:
            closed.append({**s, "close_reason": "max_length" if s["full"] else "inactivity"})
            b = _late_bound(s, config)
            bound = b if bound is None or b > bound else bound
        else:
            keep.append(s)
    return keep, closed, bound


def apply(
    state: State | None,
    event: Event,
    offset: int,
    config: SessionConfig = DEFAULT_CONFIG,
    duplicate: bool | None = None,
) -> tuple[State, Outcome, list[Session]]:
    """Fold one event into a profile's sessions.

    Returns the new state (``state`` is not modified), the outcome, and the
    sessions this event closed (each with ``close_reason``; pass them to
    :func:`summary`). A replayed or duplicate event closes nothing. ``duplicate``:
    whether the event id was already applied, when the caller keeps the recent ids
    (see :func:`app.events.dedupe.admit`); by default the state keeps its own.
    """
    cur = state if state is not None else new_state()
    if offset <= cur["offset"]:
        return cur, "replayed", []
    duplicate_id, new = dedupe.admit(cur, event.event_id, config.dedup_window, duplicate)
    new["offset"] = offset
    if duplicate_id:
        return new, "duplicate_event_id", []
    ts = event.ts
    bound = cur["closed_bound"]
    if bound is not None and ts <= bound:
        new["late"] = cur["late"] + 1
        return new, "late", []
    watermark = cur["watermark"]
    if watermark is None or ts > watermark:
        new["watermark"] = watermark = ts
    new["open"] = _place(cur["open"], event, config)
    if watermark - new["open"][0]["end"] <= config.gap + config.lateness and not new["open"][0]["full"]:
        return new, "applied", []  # fast path: the oldest open session cannot have expired
    keep, closed, new_bound = _close(new, watermark, config)
    if closed:
        new["open"] = keep
        new["closed_bound"] = new_bound
        new["closed"] = cur["closed"] + len(closed)
    return new, "applied", closed


def close_expired(state: State, now: float, config: SessionConfig = DEFAULT_CONFIG) -> tuple[State, list[Session]]:
    """Close the sessions whose bound plus lateness is before ``now``; for a periodic timer.

    ``now`` should be stream time (the newest event time seen on the partition),
    or the wall clock when events arrive in real time: with the wall clock, a
    replay of old data would close sessions before their later events arrive,
    and those events would then count as late. Returns ``state`` itself when
    nothing closes, so the caller can skip the write.
    """
    if not state["open"]:
        return state, []
    keep, closed, bound = _close(state, now, config)
    if not closed:
        return state, []
    return {**state, "open": keep, "closed_bound": bound, "closed": state["closed"] + len(closed)}, closed


def next_close_at(state: State | None, config: SessionConfig = DEFAULT_CONFIG) -> float | None:
    """The stream time after which :func:`close_expired` closes an open session; None when none is open.

    >>> state, _, _ = apply(None, ev("e1", 1000.0), offset=0)
    >>> next_close_at(state)   # 1000 + 30 min gap + 5 min lateness
    3100.0
    >>> close_expired(state, 3100.0)[1], len(close_expired(state, 3100.5)[1])
    ([], 1)
    """
    if not state or not state["open"]:
        return None
    opens = state["open"]
    if len(opens) == 1:  # the common case, asked after every event: no generator
        return _expiry(opens[0], config) + config.lateness
    return min(_expiry(s, config) + config.lateness for s in opens)


# --------------------------------------------------------------------------- output


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds: ``iso(0.5) == '1970-01-01T00:00:00.500Z'``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summary(session: Session, profile_id: str) -> dict[str, Any]:
    """The ``session-summaries`` record of a closed session (see the schema)."""
    return {
        "schema_version": 1,
        "session_id": session["id"],
        "profile_id": profile_id,
        "start": iso(session["start"]),
        "end": iso(session["end"]),
        "duration_seconds": round(session["end"] - session["start"], 3),
        "events": session["events"],
        "pages": session["pages"],
        "products_viewed": list(session["products"]),
        "categories": list(session["categories"]),
        "cart_adds": session["adds"],
        "cart_removes": session["removes"],
        "checkout_reached": session["checkout"],
        "purchased": session["purchased"],
        "revenue": session["revenue_cents"] / 100,
        "device_type": session["device"],
        "landing_page": session["landing"],
        "referrer": session["referrer"],
        "utm": session["utm"],
        "close_reason": session.get("close_reason", "inactivity"),
    }


def serving(state: State) -> dict[str, Any]:
    """What Redis may hold for a profile's sessions: the open session's running figures."""
    current = state["open"][-1] if state["open"] else None
    return {
        "open_sessions": len(state["open"]),
        "closed_sessions": state["closed"],
        "late_events": state["late"],
        "current": None if current is None else {
            "session_id": current["id"], "start": current["start"], "end": current["end"],
            "events": current["events"], "cart_adds": current["adds"], "purchased": current["purchased"],
        },
    }


# --------------------------------------------------------------------------- hooks


def coalesce(sessions: Iterable[Session], config: SessionConfig = DEFAULT_CONFIG) -> list[Session]:
    """Merge sessions that overlap or lie within ``gap`` of each other (never past ``max_length``).

    Sessions are taken in start order (ties keep input order); a full session is
    never extended. Without ``max_length`` cuts this is the connected components
    of the sessions on the time line, so it is associative.
    """
    ordered = sorted(sessions, key=lambda s: s["start"])
    out: list[Session] = []
    for s in ordered:
        if out:
            last = out[-1]
            if (not last["full"] and not s["full"] and s["start"] - last["end"] <= config.gap
                    and max(last["end"], s["end"]) - last["start"] < config.max_length):
                out[-1] = _combine(last, s, config)
                continue
        out.append(s)
    return out


class SessionHooks(KeepOnSplit[State]):
    """Identity changes for the sessions table.

    ``merge``: the open sessions of both profiles are pooled and :func:`coalesce`\\ d:
    sessions that overlap in time or are within ``gap`` of each other become one
    (id, start, device of the earlier; counters summed; products and categories
    united); the others stay separate. The closed bound and watermark are the
    later of the two, ``late`` and ``closed`` counters add up; offset and recent
    ids are the survivor's (its key's partition feeds the merged profile from now
    on). ``split``: sessions cannot be attributed to parts, so they stay with the
    part that keeps the id (:class:`~tables.hooks.KeepOnSplit`). ``erase``:
    deletes the state; open sessions are never emitted.
    """

    def __init__(self, config: SessionConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    def merge(self, surviving: State, absorbed: State) -> State:
        bounds = [b for b in (surviving["closed_bound"], absorbed["closed_bound"]) if b is not None]
        marks = [w for w in (surviving["watermark"], absorbed["watermark"]) if w is not None]
        return {
            **surviving,
            "open": coalesce([*surviving["open"], *absorbed["open"]], self.config),
            "closed_bound": max(bounds) if bounds else None,
            "watermark": max(marks) if marks else None,
            "late": surviving["late"] + absorbed["late"],
            "closed": surviving["closed"] + absorbed["closed"],
        }

    def erase(self, state: State) -> State | None:
        return None


HOOKS = register("sessions", SessionHooks())
