"""CRM, point-of-sale and call-centre records of the simulated people.

Offline systems know the same people as the website, written differently:
nicknames and capitals, abbreviated streets, phone numbers in any format,
accents dropped by old tills, and typos from people spelling their names down
the phone. Each source fills different fields, as real ones do.

Examples
--------
>>> import random
>>> from app.simulator.identity import IdentityFactory
>>> person = IdentityFactory(random.Random(2)).person(has_account=True, loyalty_member=True)
>>> doc = crm_document(random.Random(3), person, "pos", "POS-00ab", "2024-03-01T10:00:00.000Z")
>>> doc["schema_version"], doc["record_id"], doc["source"], sorted(doc)
(1, 'POS-00ab', 'pos', ['record_id', 'schema_version', 'source', 'traits', 'updated_at'])
>>> "first_name" in doc["traits"] and "last_name" in doc["traits"]
True
"""

from __future__ import annotations

import random
from typing import Any, Final, NamedTuple

from app.simulator.identity import Person
from app.simulator.variants import (
    city_form,
    email_form,
    email_typo,
    first_name_form,
    last_name_form,
    phone_form,
    postcode_form,
    street_form,
    strip_accents,
    typo,
)

RECORD_PREFIX: Final = {"crm": "CRM", "pos": "POS", "call_centre": "CC"}


class SourceProfile(NamedTuple):
    """Which fields a source fills (probabilities) and how error-prone it is."""

    email: float
    phone: float
    address: float
    dob: float
    loyalty: float
    user_id: float
    typo: float
    ascii_only: float


SOURCES: Final = {
    "crm": SourceProfile(email=0.85, phone=0.5, address=0.75, dob=0.5, loyalty=0.5, user_id=0.6,
                          typo=0.04, ascii_only=0.0),
    # Tills rarely capture more than a loyalty card and a postcode, and many strip accents.
    "pos": SourceProfile(email=0.35, phone=0.25, address=0.3, dob=0.05, loyalty=0.95, user_id=0.0,
                          typo=0.05, ascii_only=0.6),
    # Agents type what they hear: phones nearly always, names often misspelt.
    "call_centre": SourceProfile(email=0.5, phone=0.95, address=0.5, dob=0.3, loyalty=0.3,
                                  user_id=0.1, typo=0.12, ascii_only=0.1),
}


def crm_document(rng: random.Random, person: Person, source: str, record_id: str,
                 updated_at: str, user_id: str | None = None) -> dict[str, Any]:
    """A ``crm-profiles`` record (schema_version 1) describing ``person`` as ``source`` has it.

    Parameters
    ----------
    rng : random.Random
        The customer's random stream.
    person : Person
        The true identity.
    source : str
        ``crm``, ``pos`` or ``call_centre``.
    record_id, updated_at : str
        Key of the record and its RFC 3339 update time.
    user_id : str or None
        The web account id the person holds at ``updated_at``, if any; a
        source may record it.
    """
    profile = SOURCES[source]
    first = first_name_form(rng, person.first_name)
    last = last_name_form(rng, person.last_name)
    if rng.random() < profile.typo:
        first = typo(rng, first)
    if rng.random() < profile.typo:
        last = typo(rng, last)
    if rng.random() < profile.ascii_only:
        first, last = strip_accents(first), strip_accents(last)
    traits: dict[str, str] = {"first_name": first, "last_name": last}
    if rng.random() < profile.email:
        traits["email"] = (email_typo(rng, person.email) if rng.random() < profile.typo / 2
                           else email_form(rng, person.email))
    if rng.random() < profile.phone:
        traits["phone"] = phone_form(rng, person.phone_area, person.phone_local)
    if rng.random() < profile.address:
        address = person.address
        traits["street"] = street_form(rng, address)
        if rng.random() < 0.1:
            traits["address_line_2"] = f"Flat {rng.randint(1, 30)}"
        traits["city"] = city_form(rng, address.city)
        traits["postcode"] = postcode_form(rng, address.postcode)
        traits["country"] = address.country
    elif rng.random() < 0.5:
        traits["postcode"] = postcode_form(rng, person.address.postcode)
    if rng.random() < profile.dob:
        traits["date_of_birth"] = person.date_of_birth
    if person.loyalty_id and rng.random() < profile.loyalty:
        traits["loyalty_id"] = person.loyalty_id
    if user_id and rng.random() < profile.user_id:
        traits["user_id"] = user_id
    return {
        "schema_version": 1,
        "record_id": record_id,
        "source": source,
        "updated_at": updated_at,
        "traits": traits,
    }


def new_record_id(rng: random.Random, source: str) -> str:
    """A record id such as ``CRM-9f86d081884c7d65``; 64 random bits keep them unique."""
    return f"{RECORD_PREFIX.get(source, 'REC')}-{rng.getrandbits(64):016x}"
