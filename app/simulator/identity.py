"""Who the simulated people are: names, contact details and account identifiers.

A :class:`Person` holds the *true*, canonical identifiers (lower-case e-mail,
E.164 phone); the surface forms that appear in events and CRM records come from
:mod:`app.simulator.variants`. :class:`IdentityFactory` keeps e-mails, phones,
user ids and loyalty ids unique across the population, as a real customer base's
are, so that the ground truth is unambiguous.

The people are UK-based (``en-GB``, GBP, UK phone and postcode formats); names
include accents and apostrophes so that encoding and normalisation are exercised.

Examples
--------
>>> import random
>>> factory = IdentityFactory(random.Random(3))
>>> person = factory.person(has_account=True, loyalty_member=False)
>>> person.email == person.email.lower() and "@" in person.email
True
>>> person.phone.startswith("+44"), person.loyalty_id, person.user_id is not None
(True, None, True)
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

FIRST_NAMES: Final = (
    "Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Thomas", "Oscar", "William",
    "James", "Henry", "Leo", "Alfie", "Joshua", "Freddie", "Archie", "Ethan", "Isaac", "Alexander",
    "Joseph", "Edward", "Samuel", "Max", "Daniel", "Arthur", "Lucas", "Mohammed", "Benjamin", "Adam",
    "Robert", "John", "David", "Michael", "Richard", "Christopher", "Matthew", "Andrew", "Stephen",
    "Olivia", "Amelia", "Isla", "Ava", "Emily", "Isabella", "Mia", "Poppy", "Ella", "Lily",
    "Sophie", "Grace", "Evie", "Jessica", "Sophia", "Chloe", "Charlotte", "Freya", "Alice", "Ruby",
    "Elizabeth", "Katherine", "Margaret", "Susan", "Sarah", "Rebecca", "Hannah", "Emma", "Laura",
    "Zoë", "Chloé", "Siân", "Niamh", "Aoife", "Seán", "Eóin", "Renée", "José", "Priya", "Aisha",
    "Fatima", "Amir", "Raj", "Wei", "Mei", "Kofi", "Ama", "Tomasz", "Agnieszka", "Mateusz",
)

LAST_NAMES: Final = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson",
    "Clarke", "Patel", "Khan", "Lewis", "James", "Phillips", "Mason", "Mitchell", "Rose", "Davis",
    "Rodriguez", "Cox", "Alexander", "Morgan", "Moore", "Mills", "King", "Baker", "Harrison",
    "Cooper", "Morris", "Ward", "Turner", "Hughes", "Edwards", "Hill", "Scott", "Campbell",
    "Stewart", "Murray", "MacDonald", "McKenzie", "O'Brien", "O'Neill", "Ní Bhriain", "Kelly",
    "Byrne", "Singh", "Ahmed", "Ali", "Hussain", "Begum", "Chen", "Wang", "Nguyen", "Kowalski",
    "Nowak", "Okafor", "Mensah", "Fernández", "García", "Müller", "Smith-Jones", "Lloyd-Davies",
)

STREET_NAMES: Final = (
    "High", "Station", "Church", "Park", "Victoria", "London", "Mill", "Queens", "Kings", "Manor",
    "Green", "Chapel", "Springfield", "Windsor", "Grange", "Highfield", "Albert", "Orchard",
    "Willow", "Main", "New", "Alexandra", "Meadow", "Stanley", "York", "George", "Richmond",
)

# Canonical street types and the abbreviations people and systems write instead.
STREET_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "Street": ("St", "St.", "Str"),
    "Road": ("Rd", "Rd."),
    "Avenue": ("Ave", "Av."),
    "Lane": ("Ln",),
    "Close": ("Cl",),
    "Drive": ("Dr", "Dr."),
    "Gardens": ("Gdns",),
    "Crescent": ("Cres",),
}

# City and plausible outward codes of its postcodes.
CITIES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("London", ("SW1A", "E1", "N1", "SE15", "W2", "NW3", "EC1V", "SW11")),
    ("Manchester", ("M1", "M4", "M14", "M20")),
    ("Birmingham", ("B1", "B5", "B15", "B29")),
    ("Leeds", ("LS1", "LS6", "LS8")),
    ("Glasgow", ("G1", "G3", "G12")),
    ("Edinburgh", ("EH1", "EH3", "EH9")),
    ("Bristol", ("BS1", "BS6", "BS8")),
    ("Liverpool", ("L1", "L8", "L17")),
    ("Cardiff", ("CF10", "CF11", "CF24")),
    ("Belfast", ("BT1", "BT7", "BT9")),
    ("Newcastle upon Tyne", ("NE1", "NE2", "NE6")),
    ("Sheffield", ("S1", "S10", "S11")),
    ("Nottingham", ("NG1", "NG5", "NG7")),
    ("Brighton", ("BN1", "BN2", "BN3")),
    ("Oxford", ("OX1", "OX2", "OX4")),
    ("Cambridge", ("CB1", "CB2", "CB4")),
)

EMAIL_DOMAINS: Final = (
    ("gmail.com", 0.34), ("hotmail.co.uk", 0.12), ("outlook.com", 0.1), ("yahoo.co.uk", 0.08),
    ("icloud.com", 0.08), ("btinternet.com", 0.06), ("hotmail.com", 0.06), ("live.co.uk", 0.04),
    ("sky.com", 0.04), ("protonmail.com", 0.02), ("aol.com", 0.02), ("virginmedia.com", 0.04),
)

# (area code, digits after it): Ofcom-style national numbers; 7xxx are mobiles.
PHONE_AREAS: Final = (
    ("20", 8), ("121", 7), ("161", 7), ("113", 7), ("131", 7), ("141", 7), ("117", 7), ("151", 7),
    ("7700", 6), ("7911", 6), ("7723", 6), ("7800", 6), ("7957", 6), ("7412", 6), ("7511", 6),
)
_MOBILES: Final = tuple(a for a in PHONE_AREAS if a[0].startswith("7"))
_LANDLINES: Final = tuple(a for a in PHONE_AREAS if not a[0].startswith("7"))
_MOBILE_SHARE: Final = 0.7
_POSTCODE_LETTERS: Final = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True, slots=True)
class Address:
    """A postal address in its canonical form."""

    number: int
    street_name: str
    street_type: str
    city: str
    postcode: str
    country: str = "GB"

    @property
    def street(self) -> str:
        return f"{self.number} {self.street_name} {self.street_type}"


@dataclass(frozen=True, slots=True)
class Person:
    """The true identity of one simulated customer.

    Attributes
    ----------
    email : str
        Canonical (lower-case, trimmed) address.
    phone_area, phone_local : str
        National phone number split where UK formats put the first space.
    user_id : str or None
        Web account id, ``None`` for people who never hold an account.
    loyalty_id : str or None
        Loyalty card number, ``None`` for non-members.
    """

    first_name: str
    last_name: str
    email: str
    phone_area: str
    phone_local: str
    date_of_birth: str
    address: Address
    user_id: str | None
    loyalty_id: str | None

    @property
    def phone(self) -> str:
        """E.164 form, e.g. ``+442079460958``."""
        return f"+44{self.phone_area}{self.phone_local}"


def ascii_fold(text: str) -> str:
    """Lower-case ASCII letters and digits of ``text``, accents folded.

    >>> ascii_fold("Ní Bhriain"), ascii_fold("O'Brien"), ascii_fold("Zoë")
    ('nibhriain', 'obrien', 'zoe')
    """
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


class IdentityFactory:
    """Draws people whose e-mails, phones, user ids and loyalty ids are all distinct."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._emails: set[str] = set()
        self._phones: set[str] = set()
        self._user_ids: set[str] = set()
        self._loyalty_ids: set[str] = set()
        self._domains = [d for d, _ in EMAIL_DOMAINS]
        self._domain_weights = [w for _, w in EMAIL_DOMAINS]

    def person(self, has_account: bool, loyalty_member: bool) -> Person:
        """A new person.

        Parameters
        ----------
        has_account : bool
            Whether they hold (or will open during the period) a web account,
            and so get a ``user_id``.
        loyalty_member : bool
            Whether they get a ``loyalty_id``.
        """
        rng = self._rng
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        year = rng.randint(1950, 2005)
        dob = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        return Person(
            first_name=first,
            last_name=last,
            email=self._email(first, last, year),
            phone_area=(phone := self._phone())[0],
            phone_local=phone[1],
            date_of_birth=dob,
            address=self.address(),
            user_id=self._unique(self._user_ids, lambda: f"U{rng.randrange(10**8, 10**9)}")
            if has_account else None,
            loyalty_id=self._unique(self._loyalty_ids, lambda: f"LTY{rng.randrange(10**9, 10**10)}")
            if loyalty_member else None,
        )

    def address(self) -> Address:
        """A random address (not necessarily unique: flatmates share one)."""
        rng = self._rng
        city, outwards = rng.choice(CITIES)
        postcode = (
            f"{rng.choice(outwards)} {rng.randint(1, 9)}"
            f"{rng.choice(_POSTCODE_LETTERS)}{rng.choice(_POSTCODE_LETTERS)}"
        )
        return Address(
            number=rng.randint(1, 180),
            street_name=rng.choice(STREET_NAMES),
            street_type=rng.choice(tuple(STREET_TYPES)),
            city=city,
            postcode=postcode,
        )

    def _email(self, first: str, last: str, year: int) -> str:
        rng = self._rng
        f, l_ = ascii_fold(first) or "x", ascii_fold(last) or "x"
        local = rng.choice((f"{f}.{l_}", f"{f}{l_}", f"{f[0]}.{l_}", f"{f}_{l_}", f"{l_}.{f}",
                            f"{f}{l_}{year % 100:02d}", f"{f}.{l_}{rng.randint(1, 99)}"))
        domain = rng.choices(self._domains, self._domain_weights)[0]
        email = f"{local}@{domain}"
        while email in self._emails:
            # Common names collide; real people then add digits, and so do we.
            email = f"{local}{rng.randint(1, 9999)}@{domain}"
        self._emails.add(email)
        return email

    def _phone(self) -> tuple[str, str]:
        rng = self._rng
        while True:
            area, digits = rng.choice(_MOBILES if rng.random() < _MOBILE_SHARE else _LANDLINES)
            # Landline numbers do not start with 0 or 1 after the area code.
            local = f"{rng.randint(2, 9)}{rng.randrange(10 ** (digits - 1)):0{digits - 1}d}"
            if area + local not in self._phones:
                self._phones.add(area + local)
                return area, local

    @staticmethod
    def _unique(seen: set[str], draw: Callable[[], str]) -> str:
        while True:
            value = draw()
            if value not in seen:
                seen.add(value)
                return value
