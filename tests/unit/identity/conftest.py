"""Shared fixtures of the identity tests: a resolver, states, and a small synthetic population."""

from __future__ import annotations

import random
from typing import Any

import pytest

from app.identity import IdentityResolver, IdentityState

SECRET = "unit-test-secret-0123456789"


@pytest.fixture
def resolver() -> IdentityResolver:
    return IdentityResolver(SECRET)


@pytest.fixture
def state() -> IdentityState:
    """State over JSON-copy stores: proves values serialise and every change is written back."""
    return IdentityState.json_copies()


def crm(record_id: str, source: str = "crm", **traits: str) -> dict[str, Any]:
    return {"schema_version": 1, "record_id": record_id, "source": source, "traits": traits}


def event(
    event_id: str,
    anonymous_id: str,
    user_id: str | None = None,
    device: str | None = None,
    traits: dict[str, str] | None = None,
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "schema_version": 1,
        "event_id": event_id,
        "type": "identify" if traits else "page_view",
        "timestamp": "2024-05-01T10:00:00Z",
        "anonymous_id": anonymous_id,
        "user_id": user_id,
    }
    if device:
        ev["context"] = {"device": {"id": device}}
    if traits:
        ev["properties"] = {"traits": traits}
    return ev


FIRST = [
    "olivia",
    "jack",
    "amelia",
    "noah",
    "isla",
    "leo",
    "ava",
    "oscar",
    "mia",
    "harry",
    "grace",
    "charlie",
    "ella",
    "george",
    "lily",
    "henry",
    "chloe",
    "thomas",
    "ruby",
    "james",
]
LAST = [
    "smith",
    "jones",
    "williams",
    "brown",
    "taylor",
    "davies",
    "wilson",
    "evans",
    "thomas",
    "johnson",
    "roberts",
    "walker",
    "wright",
    "robinson",
    "thompson",
    "white",
    "hughes",
    "edwards",
    "green",
    "hall",
]
STREETS = ["high street", "station road", "church lane", "park avenue", "mill road", "kings way"]


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def population(seed: int = 7, people: int = 40) -> list[tuple[int, dict[str, Any]]]:
    """``(person, crm record)`` pairs: 1-3 records a person, duplicates with small typos."""
    rng = random.Random(seed)
    out = []
    n = 0
    for person in range(people):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        dob = f"{rng.randrange(1940, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        street = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}"
        postcode = f"{rng.randrange(2000, 8000)}"
        loyalty = f"{rng.randrange(10**6, 10**7)}"
        for copy in range(rng.choice([1, 2, 2, 3])):
            traits = {
                "first_name": first,
                "last_name": last,
                "date_of_birth": dob,
                "street": street,
                "postcode": postcode,
                "city": "springfield",
                "loyalty_id": loyalty,
            }
            if copy:
                field = rng.choice(["first_name", "last_name", "street"])
                traits[field] = _typo(rng, traits[field])
            n += 1
            out.append((person, crm(f"rec-{n}", **traits)))
    rng.shuffle(out)
    return out
