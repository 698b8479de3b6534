"""What one customer does over the period: sessions of events, logins, CRM records.

:class:`CustomerStream` turns a :class:`~app.simulator.population.Customer` into
its records in time order, lazily, one session at a time, so a run holds at
most one session per customer in memory.

Guarantees the tests and the ground truth rely on:

* a session is on one device and one ``anonymous_id``; consecutive events of a
  session are at most :data:`MAX_EVENT_GAP_MS` (10 min) apart;
* the next session of the same customer starts at least
  :data:`MIN_SESSION_GAP_MS` (45 min) after the previous one ended, so a
  30-minute inactivity rule recovers the true sessions exactly;
* a purchase contains exactly the cart built by that session's add_to_cart and
  remove_from_cart events, and its revenue is the sum of price times quantity;
* every event lies in ``[start, end]`` of the period: a session running past
  the end is cut there (and never cut between a checkout's steps in a way that
  leaves a purchase without its cart).

Examples
--------
>>> from datetime import datetime, UTC
>>> from app.simulator.catalog import Catalog
>>> from app.simulator.config import SimConfig
>>> from app.simulator.population import build_population
>>> config = SimConfig(seed=3, customers=10, end=datetime(2024, 3, 1, tzinfo=UTC))
>>> world = World.from_config(config, Catalog.build(config.seed))
>>> customer = build_population(config)[0]
>>> records = [(t, r) for t, r in CustomerStream(customer, world).records() if r is not None]
>>> times = [t for t, _ in records]
>>> times == sorted(times) and all(world.start_ms <= t <= world.end_ms for t in times)
True
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote_plus

import orjson

from app.simulator.catalog import CURRENCY, Catalog, Product
from app.simulator.clock import DAY_MS, HOUR_MS, MINUTE_MS, format_ms, to_ms
from app.simulator.config import SimConfig
from app.simulator.crm import crm_document, new_record_id
from app.simulator.ids import hex_id, uuid4_from
from app.simulator.population import Customer, DeviceProfile
from app.simulator.record import SimRecord
from app.simulator.variants import (
    city_form,
    email_form,
    email_typo,
    first_name_form,
    last_name_form,
    phone_form,
    postcode_form,
    street_form,
    typo,
)

_T = TypeVar("_T")

MAX_EVENT_GAP_MS: Final = 10 * MINUTE_MS
MIN_SESSION_GAP_MS: Final = 45 * MINUTE_MS
SITE: Final = "https://shop.example.co.uk"
LOCALE: Final = "en-GB"

P_COOKIE_RESET: Final = 0.03  # cleared cookies, private windows, new browsers
P_LOGIN_EXPIRES: Final = 0.1  # a logged-in device is logged out by the next session
P_BANNER_ANSWERED: Final = 0.85  # the rest ignore the cookie banner
P_REIDENTIFY: Final = 0.1  # apps re-send identify when opened while logged in
P_REGISTER_SESSION: Final = 0.3  # a would-be registrant signs up in a given session
P_LOGIN_AT_CHECKOUT: Final = 0.7  # account holders who log in to pay (the rest check out as guest)
P_EMAIL_TYPO: Final = 0.02
P_NAME_TYPO: Final = 0.02
FAVOURITE_SHARE: Final = 0.75  # share of category choices made among the favourites
MAX_STEPS: Final = 60

# Relative odds of a session starting in each UTC hour (UK shoppers: evenings peak).
DIURNAL: Final = (
    0.15, 0.08, 0.05, 0.04, 0.04, 0.06, 0.15, 0.35, 0.5, 0.6, 0.65, 0.7,
    0.75, 0.7, 0.65, 0.65, 0.7, 0.8, 0.9, 1.0, 1.0, 0.9, 0.6, 0.3,
)
_DIURNAL_MEAN: Final = sum(DIURNAL) / len(DIURNAL)

_REFERRERS: Final = (
    (None, None, 0.40),
    ("https://www.google.com/", None, 0.30),
    ("https://www.google.com/", {"source": "google", "medium": "cpc"}, 0.10),
    ("https://www.facebook.com/", {"source": "facebook", "medium": "social"}, 0.06),
    ("https://www.instagram.com/", {"source": "instagram", "medium": "social"}, 0.06),
    ("https://www.bing.com/", None, 0.04),
    ("https://www.vouchercodes.co.uk/", {"source": "vouchercodes", "medium": "affiliate"}, 0.04),
)
_REFERRER_CUM: Final = tuple(sum(r[2] for r in _REFERRERS[: i + 1]) for i in range(len(_REFERRERS)))
# Page dwell times: quantiles of a log-normal law (median about 30 s), looked up
# rather than drawn because drawing costs more than building the event does.
_DWELL_BITS: Final = 10
_DWELL_MS: Final = tuple(
    800 + int(math.exp(10.3 + 0.9 * statistics.NormalDist().inv_cdf((i + 0.5) / 2**_DWELL_BITS)))
    for i in range(2**_DWELL_BITS)
)
_dumps = orjson.dumps
_PAGES: Final = (("home", "Home"), ("deals", "Deals"), ("account", "My account"), ("help", "Help"),
                 ("stores", "Store finder"), ("new", "New in"))


@dataclass(frozen=True)
class World:
    """What every customer stream shares: the catalogue, the topics and the period."""

    catalog: Catalog
    clickstream_topic: str
    crm_topic: str
    start_ms: int
    end_ms: int

    @classmethod
    def from_config(cls, config: SimConfig, catalog: Catalog) -> World:
        end_ms = to_ms(config.end)
        return cls(catalog, config.topics.clickstream, config.topics.crm_profiles,
                   end_ms - int(config.days * DAY_MS), end_ms)


class _Device:
    """A device's changing state: its current cookie, login and consent."""

    __slots__ = ("anonymous_id", "consented", "context", "key", "kind", "logged_in", "profile")

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.context = profile.context
        self.kind = profile.kind
        self.logged_in = False
        self.consented = False
        self.anonymous_id = profile.first_anonymous_id
        self.key = self.anonymous_id.encode()

    def reset_cookie(self, anonymous_id: str) -> None:
        self.anonymous_id = anonymous_id
        self.key = anonymous_id.encode()
        self.logged_in = False
        self.consented = False


class CustomerStream:
    """The records of one customer, generated lazily in time order.

    Parameters
    ----------
    customer : Customer
        Who; its ``seed`` drives every choice made here.
    world : World
        Catalogue, topics and period.
    """

    def __init__(self, customer: Customer, world: World) -> None:
        self.customer = customer
        self.archetype = customer.archetype
        self.world = world
        self.rng = random.Random(customer.seed)
        self.devices = [_Device(p) for p in customer.devices]
        n = len(self.devices)
        # The first device is the customer's main one.
        self._device_cum = [0.6 + 0.4 * i / (n - 1) for i in range(n)] if n > 1 else [1.0]
        self.user_id: str | None = customer.person.user_id if customer.has_account else None
        self.registered_at: int | None = None if not customer.has_account else world.start_ms
        self.truth_base: dict[str, Any] = {
            "customer_id": customer.customer_id, "archetype": customer.archetype.name,
        }
        self.session_count = 0
        weights = self.archetype.step_weights
        total = sum(weights)
        self._step_cum = [sum(weights[: i + 1]) / total for i in range(len(weights))]
        self._mean_gap_ms = DAY_MS / self.archetype.sessions_per_day * _DIURNAL_MEAN
        self._categories = world.catalog.categories
        # Hot-path lookups, bound once.
        self._end_ms = world.end_ms
        self._topic = world.clickstream_topic
        self._getrandbits = self.rng.getrandbits
        # Per-session state, reset by _session().
        self.t = 0
        self.closed = False
        self.device = self.devices[0]
        self.event_user_id: str | None = None
        self.truth: dict[str, Any] = self.truth_base
        self.out: list[tuple[int, SimRecord]] = []
        self.cart: dict[str, list[Any]] = {}
        self.cart_id = ""
        self._first = True
        self._context: dict[str, Any] = {}

    # ------------------------------------------------------------------ timeline

    def records(self) -> Iterator[tuple[int, SimRecord | None]]:
        """Yield ``(timestamp_ms, record)`` in non-decreasing time order.

        Before each session it yields ``(start, None)``, so that a merge of many
        customers can order streams by their next session without building it;
        the session is generated only when the stream is advanced past that
        marker. Consumers skip the markers.
        """
        c, world, rng = self.customer, self.world, self.rng
        active_until = min(c.active_until_ms, world.end_ms)
        crm_due = sorted(
            (rng.randint(c.active_from_ms, active_until), source) for source in c.crm_sources
        )
        crm_due.reverse()  # pop() from the end takes the earliest
        # A new visitor's arrival is their first visit; others were already around.
        start = c.active_from_ms if c.archetype.arrives else self._next_start(c.active_from_ms)
        while start <= active_until:
            while crm_due and crm_due[-1][0] <= start:
                yield self._crm_record(*crm_due.pop())
            yield start, None
            session = self._session(start)
            self.out = []
            if not session:  # cannot happen: a session's first event is at its start
                break
            last = session[-1][0]
            if crm_due and crm_due[-1][0] <= last:
                for item in session:
                    while crm_due and crm_due[-1][0] <= item[0]:
                        yield self._crm_record(*crm_due.pop())
                    yield item
            else:
                yield from session
            # Drop the session before waiting (in simulated time) for the next one:
            # a paused stream should hold no records.
            del session
            if self.closed:
                break
            start = self._next_start(last + MIN_SESSION_GAP_MS)
        while crm_due:
            yield self._crm_record(*crm_due.pop())

    def _next_start(self, earliest: int) -> int:
        # Thinning of a Poisson process by the hour-of-day profile.
        rng, t = self.rng, earliest
        while True:
            t += int(rng.expovariate(1.0) * self._mean_gap_ms)
            if rng.random() < DIURNAL[(t // HOUR_MS) % 24]:
                return t

    def _crm_record(self, ts: int, source: str) -> tuple[int, SimRecord]:
        rng = self.rng
        record_id = new_record_id(rng, source)
        user_id = self.customer.person.user_id
        if self.registered_at is None or self.registered_at > ts:
            user_id = None
        doc = crm_document(rng, self.customer.person, source, record_id, format_ms(ts), user_id)
        return ts, SimRecord(self.world.crm_topic, record_id.encode(), orjson.dumps(doc),
                             self.truth_base)

    # ------------------------------------------------------------------ sessions

    def _session(self, start: int) -> list[tuple[int, SimRecord]]:
        rng, a = self.rng, self.archetype
        r = rng.random()
        device = self.devices[next(i for i, w in enumerate(self._device_cum) if r <= w)]
        if rng.random() < P_COOKIE_RESET:
            device.reset_cookie(uuid4_from(rng.getrandbits(128)))
        elif device.logged_in and rng.random() < P_LOGIN_EXPIRES:
            device.logged_in = False
        self.session_count += 1
        self.device = device
        self.t = start
        self._first = True
        self.closed = False
        self.out = []
        self.cart = {}
        self.cart_id = hex_id(rng, "cart-", 12)
        self.event_user_id = self.user_id if device.logged_in else None
        # Shared by the session's events that add nothing to it (each is serialised
        # on the spot, so sharing one dict is safe and saves building one per event).
        self._context = {"channel": device.profile.channel, "device": device.context,
                         "locale": LOCALE, "user_agent": device.profile.user_agent}
        self.truth = {**self.truth_base,
                      "session_id": f"{self.customer.customer_id}-s{self.session_count}"}

        if rng.random() < a.p_email_session:
            if not self._email_entry():
                return self.out
        else:
            self._landing()
        if not device.consented:
            device.consented = True
            if rng.random() < P_BANNER_ANSWERED:
                self._consent_banner()
        if device.logged_in and rng.random() < P_REIDENTIFY:
            self._identify({"user_id": self.user_id}, self._between(1000, 5000))
        if rng.random() < a.p_consent_change:
            self._consent_change()

        steps = min(MAX_STEPS, int(rng.expovariate(1.0 / a.steps_per_session)) + 1)
        login_at = -1
        register_at = -1
        if self.user_id is not None and not device.logged_in and rng.random() < a.p_login:
            login_at = rng.randrange(steps)
        elif (self.user_id is None and self.customer.will_register
              and rng.random() < P_REGISTER_SESSION):
            register_at = rng.randrange(steps)
        step = 0
        while step < steps and not self.closed:
            if step == login_at:
                self._login()
            elif step == register_at:
                self._register()
            if self.cart and rng.random() < a.p_remove_from_cart:
                self._remove_from_cart()
            r = rng.random()
            if r < self._step_cum[0]:
                self._page_view()
            elif r < self._step_cum[1]:
                self._search()
            elif r < self._step_cum[2]:
                if self._product_view(self._pick_product()) and rng.random() < a.items_bias:
                    steps += 1
            else:
                self._recommendation_click()
            step += 1
        if self.cart and not self.closed and rng.random() < a.p_checkout:
            self._checkout()
        return self.out

    # ------------------------------------------------------------------ events

    def _emit(self, event_type: str, properties: dict[str, Any] | None, gap_ms: int,
              url: str | None = None, channel: str | None = None,
              context_extra: dict[str, Any] | None = None) -> bool:
        """Append one event ``gap_ms`` after the previous; False once the period is over."""
        if self.closed:
            return False
        if self._first:
            self._first = False
            t = self.t
        else:
            t = self.t + (gap_ms if gap_ms < MAX_EVENT_GAP_MS else MAX_EVENT_GAP_MS)
        if t > self._end_ms:
            self.closed = True
            return False
        self.t = t
        device = self.device
        context = self._context
        if channel is not None:
            context = {**context, "channel": channel}
        elif url is not None and context["channel"] == "web":
            context = {**context, "page_url": url}
        if context_extra:
            context = {**context, **context_extra}
        event: dict[str, Any] = {
            "schema_version": 1,
            "event_id": uuid4_from(self._getrandbits(128)),
            "type": event_type,
            "timestamp": format_ms(t),
            "anonymous_id": device.anonymous_id,
        }
        if self.event_user_id is not None:
            event["user_id"] = self.event_user_id
        event["context"] = context
        if properties is not None:
            event["properties"] = properties
        self.out.append((t, SimRecord(self._topic, device.key, _dumps(event), self.truth)))
        return True

    def _dwell(self) -> int:
        """Time spent on a page before the next event: log-normal, median about 30 s."""
        getrandbits = self._getrandbits
        return _DWELL_MS[getrandbits(_DWELL_BITS)] + getrandbits(10)

    def _between(self, low: int, high: int) -> int:
        """A uniform integer in ``[low, high)``; cheaper than ``randint`` on the hot path."""
        return low + int(self.rng.random() * (high - low))

    def _pick(self, items: Sequence[_T]) -> _T:
        """A uniform choice; cheaper than ``Random.choice`` on the hot path."""
        return items[int(self.rng.random() * len(items))]

    def _quick(self) -> int:
        return self._between(1000, 8000)

    def _landing(self) -> None:
        rng = self.rng
        index = min(bisect.bisect_left(_REFERRER_CUM, rng.random()), len(_REFERRERS) - 1)
        referrer, utm, _ = _REFERRERS[index]
        page_type, title = _PAGES[0] if rng.random() < 0.6 else rng.choice(_PAGES)
        extra: dict[str, Any] = {}
        if referrer is not None:
            extra["referrer"] = referrer
        if utm is not None:
            campaign = f"{rng.choice(self.customer.favourite_categories)}-promo"
            extra["utm"] = {**utm, "campaign": campaign}
        self._emit("page_view", {"title": title, "page_type": page_type}, 0, f"{SITE}/",
                   context_extra=extra)

    def _email_entry(self) -> bool:
        """email_open, maybe email_click and its landing page; False when not clicked."""
        rng, a = self.rng, self.archetype
        week = datetime.fromtimestamp(self.t / 1000, UTC).isocalendar()
        campaign = f"cmp-{week.year}w{week.week:02d}-{rng.choice(self.customer.favourite_categories)}"
        message = hex_id(rng, "msg-", 16)
        props = {"campaign_id": campaign, "message_id": message}
        if not self._emit("email_open", props, 0, channel="email"):
            return False
        if rng.random() >= a.p_email_click:
            return False
        url = f"{SITE}/c/{campaign.rsplit('-', 1)[1]}?utm_source=newsletter&utm_campaign={campaign}"
        self._emit("email_click", {**props, "url": url}, self._between(2000, 300_000), channel="email")
        utm = {"source": "newsletter", "medium": "email", "campaign": campaign}
        self._emit("page_view", {"title": "Newsletter offers", "page_type": "landing"},
                   self._between(800, 3000), url, context_extra={"utm": utm})
        return True

    def _consent_banner(self) -> None:
        rng = self.rng
        if rng.random() < self.archetype.p_grant_all:
            purposes = {"personalization": True, "marketing": True, "analytics": True}
        else:
            purposes = {"personalization": rng.random() < 0.5, "marketing": False,
                        "analytics": rng.random() < 0.6}
        self._emit("consent", {"purposes": purposes, "source": "cookie_banner"},
                   self._between(1500, 15000), f"{SITE}/")

    def _consent_change(self) -> None:
        rng = self.rng
        purpose = rng.choice(("personalization", "marketing", "marketing", "analytics"))
        granted = rng.random() >= self.archetype.p_withdraw
        self._emit("consent", {"purposes": {purpose: granted}, "source": "preference_centre"},
                   self._dwell(), f"{SITE}/account/privacy")

    def _pick_category(self) -> str:
        rng = self.rng
        if rng.random() < FAVOURITE_SHARE:
            r = rng.random()
            favourites = self.customer.favourite_categories
            # Cumulative FAVOURITE_WEIGHTS (0.5, 0.3, 0.2) of the population module.
            return favourites[0] if r < 0.5 else favourites[1] if r < 0.8 else favourites[2]
        return self._pick(self._categories)

    def _pick_product(self, category: str | None = None) -> Product:
        return self.world.catalog.pick(self.rng, category or self._pick_category(),
                                       self.archetype.price_bias)

    def _page_view(self) -> None:
        rng = self.rng
        if rng.random() < 0.7:
            category = self._pick_category()
            self._emit("page_view", {"title": category.capitalize(), "page_type": "category"},
                       self._dwell(), f"{SITE}/c/{category}")
        else:
            page_type, title = self._pick(_PAGES)
            self._emit("page_view", {"title": title, "page_type": page_type}, self._dwell(),
                       f"{SITE}/{page_type}")

    def _search(self) -> None:
        rng = self.rng
        category = self._pick_category()
        query = self._pick(self.world.catalog.search_terms[category])
        if rng.random() < 0.05:
            query = typo(rng, query)
        results = 0 if rng.random() < 0.05 else self._between(1, 241)
        if self._emit("search", {"query": query, "results_count": results}, self._dwell(),
                      f"{SITE}/search?q={quote_plus(query)}") and results and rng.random() < 0.8:
            self._product_view(self._pick_product(category))

    def _product_view(self, product: Product) -> bool:
        """View ``product``, maybe add it to the cart; True when it was added."""
        rng, a = self.rng, self.archetype
        if not self._emit("product_view", {"product_id": product.product_id,
                                           "category": product.category,
                                           "price": product.price, "currency": CURRENCY},
                          self._dwell(), f"{SITE}/p/{product.product_id}"):
            return False
        if a.p_add_to_cart and rng.random() < a.p_add_to_cart:
            quantity = 1 if rng.random() < 0.75 else rng.randint(1, a.max_quantity)
            if self._emit("add_to_cart", {"product_id": product.product_id,
                                          "category": product.category, "price": product.price,
                                          "quantity": quantity, "cart_id": self.cart_id,
                                          "currency": CURRENCY},
                          self._between(3000, 60_000), f"{SITE}/p/{product.product_id}"):
                line = self.cart.get(product.product_id)
                if line is None:
                    self.cart[product.product_id] = [product, quantity]
                else:
                    line[1] += quantity
                return True
        return False

    def _remove_from_cart(self) -> None:
        rng = self.rng
        product_id = rng.choice(list(self.cart))
        product, quantity = self.cart[product_id]
        if self._emit("remove_from_cart", {"product_id": product_id, "category": product.category,
                                           "price": product.price, "quantity": quantity,
                                           "cart_id": self.cart_id, "currency": CURRENCY},
                      self._between(2000, 40_000), f"{SITE}/basket"):
            del self.cart[product_id]

    def _recommendation_click(self) -> None:
        rng = self.rng
        product = self._pick_product(self.customer.favourite_categories[0])
        if self._emit("recommendation_click", {"recommendation_id": hex_id(rng, "rec-", 16),
                                               "product_id": product.product_id,
                                               "position": self._between(0, 10)},
                      self._dwell(), f"{SITE}/"):
            self._product_view(product)

    # ------------------------------------------------------------------ identity

    def _identify(self, traits: dict[str, Any], gap_ms: int) -> bool:
        return self._emit("identify", {"traits": traits}, gap_ms, f"{SITE}/account/login")

    def _email(self) -> str:
        rng, email = self.rng, self.customer.person.email
        return email_typo(rng, email) if rng.random() < P_EMAIL_TYPO else email_form(rng, email)

    def _names(self, traits: dict[str, Any]) -> None:
        rng, person = self.rng, self.customer.person
        first = first_name_form(rng, person.first_name)
        last = last_name_form(rng, person.last_name)
        if rng.random() < P_NAME_TYPO:
            last = typo(rng, last)
        traits["first_name"] = first
        traits["last_name"] = last

    def _address(self, traits: dict[str, Any]) -> None:
        rng, address = self.rng, self.customer.person.address
        traits["street"] = street_form(rng, address)
        traits["city"] = city_form(rng, address.city)
        traits["postcode"] = postcode_form(rng, address.postcode)
        traits["country"] = address.country

    def _phone(self, traits: dict[str, Any]) -> None:
        person = self.customer.person
        traits["phone"] = phone_form(self.rng, person.phone_area, person.phone_local)

    def _login(self) -> None:
        """An account holder signs in on this device; later events carry the user id."""
        rng, person = self.rng, self.customer.person
        traits: dict[str, Any] = {"user_id": self.user_id}
        if rng.random() < 0.85:
            traits["email"] = self._email()
        if rng.random() < 0.25:
            self._phone(traits)
        if person.loyalty_id and rng.random() < 0.4:
            traits["loyalty_id"] = person.loyalty_id
        if rng.random() < 0.3:
            self._names(traits)
        if rng.random() < 0.1:
            self._address(traits)
        if rng.random() < 0.05:
            traits["date_of_birth"] = person.date_of_birth
        self.event_user_id = self.user_id
        if self._identify(traits, self._quick()):
            self.device.logged_in = True
        else:
            self.event_user_id = None

    def _register(self) -> None:
        """Open an account: the person's user id becomes theirs from this event on."""
        rng, person = self.rng, self.customer.person
        self.user_id = person.user_id
        self.event_user_id = self.user_id
        traits: dict[str, Any] = {"user_id": self.user_id, "email": self._email()}
        self._names(traits)
        if rng.random() < 0.5:
            self._phone(traits)
        if self._identify(traits, self._dwell()):
            self.registered_at = self.t
            self.device.logged_in = True
        else:
            self.user_id = self.event_user_id = None

    def _guest_details(self) -> None:
        """Checkout without an account: contact details but no user id."""
        rng = self.rng
        traits: dict[str, Any] = {"email": self._email()}
        self._names(traits)
        self._address(traits)
        if rng.random() < 0.5:
            self._phone(traits)
        self._identify(traits, self._dwell())

    def _checkout(self) -> None:
        rng, a = self.rng, self.archetype
        items = [{"product_id": p.product_id, "category": p.category, "price": p.price,
                  "quantity": q} for p, q in self.cart.values()]
        value = round(sum(p.price * q for p, q in self.cart.values()), 2)
        if not self._emit("checkout_start", {"cart_id": self.cart_id, "value": value,
                                             "currency": CURRENCY, "items": items},
                          self._dwell(), f"{SITE}/checkout"):
            return
        if not self.device.logged_in:
            if self.user_id is not None and rng.random() < P_LOGIN_AT_CHECKOUT:
                self._login()
            elif self.user_id is None and self.customer.will_register and rng.random() < 0.5:
                self._register()
            else:
                self._guest_details()
        if rng.random() < a.p_purchase:
            order_id = f"ORD-{rng.randrange(10**11, 10**12)}"
            if self._emit("purchase", {"order_id": order_id, "items": items, "revenue": value,
                                       "currency": CURRENCY},
                          self._between(20_000, 240_000), f"{SITE}/checkout/confirmation"):
                self.cart = {}
