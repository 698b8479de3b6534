"""The simulated population: who each customer is, what they own and how they behave.

Everything here is decided once, up front, from the seed, so that the ground
truth can be rebuilt from a :class:`~app.simulator.config.SimConfig` alone
(:class:`~app.simulator.truth.TruthWriter` does that). What happens over time
(sessions, cookie resets, logins) is left to :mod:`app.simulator.behaviour`,
driven by each customer's own random stream.

Examples
--------
>>> from datetime import datetime, UTC
>>> from app.simulator.config import SimConfig
>>> config = SimConfig(seed=1, customers=40, end=datetime(2024, 3, 1, tzinfo=UTC))
>>> people = build_population(config)
>>> len(people), people[0].customer_id
(40, 'cust-000001')
>>> sorted({c.archetype.name for c in people}) == sorted(ARCHETYPES)
True
>>> [c.customer_id for c in build_population(config)] == [c.customer_id for c in people]
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from app.simulator.archetypes import ARCHETYPES, Archetype
from app.simulator.catalog import CATEGORIES
from app.simulator.clock import DAY_MS, to_ms
from app.simulator.config import SimConfig
from app.simulator.identity import IdentityFactory, Person
from app.simulator.ids import hex_id, uuid4_from

# (device type, share, [(os, user agent)], chance the device uses the app rather than the web)
DEVICE_KINDS: Final = (
    ("mobile", 0.55, (
        ("iOS 17.4", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                     "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"),
        ("Android 14", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
                       "(KHTML, like Gecko) Chrome/123.0.0.0 Mobile Safari/537.36"),
        ("Android 13", "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 "
                       "(KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36"),
    ), 0.4),
    ("desktop", 0.35, (
        ("Windows 11", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                       "(KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36"),
        ("macOS 14.4", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 "
                       "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"),
        ("Linux", "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0"),
    ), 0.0),
    ("tablet", 0.10, (
        ("iPadOS 17.4", "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"),
        ("Android 13", "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 "
                       "(KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36"),
    ), 0.2),
)
DEVICE_COUNTS: Final[tuple[tuple[int, float], ...]] = ((1, 0.45), (2, 0.35), (3, 0.15), (4, 0.05))
CRM_SOURCES: Final[tuple[tuple[str, float], ...]] = (("crm", 0.5), ("pos", 0.3), ("call_centre", 0.2))
CRM_RECORD_COUNTS: Final[tuple[tuple[int, float], ...]] = ((1, 0.6), (2, 0.3), (3, 0.1))
FAVOURITE_WEIGHTS: Final = (0.5, 0.3, 0.2)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """One device of a customer and the cookie it starts the period with.

    ``context`` is the ``context.device`` object of its events, built once and
    shared by all of them.
    """

    device_id: str
    kind: str
    os: str
    user_agent: str
    channel: str
    first_anonymous_id: str
    context: dict[str, str]


@dataclass(frozen=True, slots=True)
class Customer:
    """Static facts about one simulated customer.

    Attributes
    ----------
    index : int
        Position in the population, 0-based.
    seed : int
        Seed of the customer's own random stream (behaviour and CRM records).
    has_account : bool
        Holds a web account from the start (``person.user_id`` is then set).
    will_register : bool
        Has no account yet but may open one during the period.
    favourite_categories : tuple of str
        Categories the customer mostly looks at, most preferred first.
    active_from_ms, active_until_ms : int
        Window (epoch ms) in which the customer has sessions and CRM records.
    crm_sources : tuple of str
        Source system of each of the customer's CRM records (may be empty).
    """

    index: int
    customer_id: str
    archetype: Archetype
    person: Person
    devices: tuple[DeviceProfile, ...]
    has_account: bool
    will_register: bool
    favourite_categories: tuple[str, ...]
    active_from_ms: int
    active_until_ms: int
    crm_sources: tuple[str, ...]
    seed: int


def _weighted(rng: random.Random, table: Sequence[tuple[_T, float]]) -> _T:
    values = [v for v, _ in table]
    weights = [w for _, w in table]
    return rng.choices(values, weights)[0]


def _archetype_quota(rng: random.Random, n: int) -> list[Archetype]:
    """Archetypes in exact proportion to their weights, in random order.

    A quota rather than independent draws so that even small populations
    contain every archetype, which tests and demos rely on.
    """
    archetypes = list(ARCHETYPES.values())
    counts = [int(a.weight * n) for a in archetypes]
    # Largest remainders get the seats rounding left over.
    order = sorted(range(len(archetypes)), key=lambda i: _frac(archetypes[i].weight * n), reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    result = [a for a, k in zip(archetypes, counts, strict=True) for _ in range(k)]
    rng.shuffle(result)
    return result


def _frac(x: float) -> float:
    """Fractional part of ``x``.

    >>> _frac(2.25)
    0.25
    """
    return x - int(x)


def _devices(rng: random.Random) -> tuple[DeviceProfile, ...]:
    count = _weighted(rng, DEVICE_COUNTS)
    kinds = [(k, share) for k, share, _, _ in DEVICE_KINDS]
    devices = []
    for _ in range(count):
        kind = rng.choices([k for k, _ in kinds], [s for _, s in kinds])[0]
        _, _, systems, app_share = next(d for d in DEVICE_KINDS if d[0] == kind)
        os_name, user_agent = rng.choice(systems)
        device_id = hex_id(rng, "dev-", 16)
        devices.append(DeviceProfile(
            device_id=device_id,
            kind=kind,
            os=os_name,
            user_agent=user_agent,
            channel="app" if rng.random() < app_share else "web",
            first_anonymous_id=uuid4_from(rng.getrandbits(128)),
            context={"id": device_id, "type": kind, "os": os_name},
        ))
    return tuple(devices)


def _favourites(rng: random.Random, archetype: Archetype) -> tuple[str, ...]:
    names = [spec.name for spec in CATEGORIES]
    weights = [archetype.category_affinity.get(n, 1.0) for n in names]
    chosen: list[str] = []
    for _ in FAVOURITE_WEIGHTS:
        pick = rng.choices(names, weights)[0]
        i = names.index(pick)
        names.pop(i)
        weights.pop(i)
        chosen.append(pick)
    return tuple(chosen)


def build_population(config: SimConfig) -> list[Customer]:
    """All customers of ``config``, identical for identical configs.

    Parameters
    ----------
    config : SimConfig
        Only ``seed``, ``customers``, ``days``, ``end`` and ``crm_share`` matter.

    Returns
    -------
    list of Customer
        Ordered by ``index``; ``customer_id`` is ``cust-`` and the 1-based index.
    """
    rng = random.Random(f"persona-sim/{config.seed}/population")
    identities = IdentityFactory(rng)
    end_ms = to_ms(config.end)
    span_ms = int(config.days * DAY_MS)
    start_ms = end_ms - span_ms
    people: list[Customer] = []
    for index, archetype in enumerate(_archetype_quota(rng, config.customers)):
        has_account = rng.random() < archetype.p_account
        will_register = not has_account and rng.random() < archetype.p_register
        person = identities.person(
            has_account=has_account or will_register,
            loyalty_member=rng.random() < archetype.p_loyalty,
        )
        active_from = start_ms + (int(rng.uniform(0.0, 0.9) * span_ms) if archetype.arrives else 0)
        active_until = end_ms
        if archetype.active_until < 1.0:
            # Lapsing is spread around the archetype's point so not everyone stops at once.
            stop = archetype.active_until * rng.uniform(0.7, 1.3)
            active_until = start_ms + int(min(stop, 1.0) * span_ms)
        crm_sources: tuple[str, ...] = ()
        if rng.random() < config.crm_share:
            n_records = _weighted(rng, CRM_RECORD_COUNTS)
            crm_sources = tuple(_weighted(rng, CRM_SOURCES) for _ in range(n_records))
        people.append(Customer(
            index=index,
            customer_id=f"cust-{index + 1:06d}",
            archetype=archetype,
            person=person,
            devices=_devices(rng),
            has_account=has_account,
            will_register=will_register,
            favourite_categories=_favourites(rng, archetype),
            active_from_ms=active_from,
            active_until_ms=active_until,
            crm_sources=crm_sources,
            seed=rng.getrandbits(64),
        ))
    return people
