"""Surface forms of identifiers: how the same fact is written by different people and systems.

Every function takes the canonical value and a seeded :class:`random.Random` and
returns one way of writing it. Case and format variants are *recoverable*
(normalising them gives the canonical value back); typos are not, which is the
point: identity resolution has to cope with both.

Examples
--------
>>> import random, re
>>> rng = random.Random(5)
>>> forms = {email_form(rng, "john.smith@gmail.com") for _ in range(40)}
>>> "John.Smith@Gmail.com" in forms, len(forms) > 4
(True, True)
>>> {f.strip().lower() for f in forms}
{'john.smith@gmail.com'}
>>> phones = {phone_form(rng, "20", "79460958") for _ in range(60)}
>>> "(020) 79460958" in phones and "+44 20 7946 0958" in phones
True
>>> {re.sub(r"^(44|0)", "", re.sub(r"\\(0\\)|\\D", "", p).removeprefix("00")) for p in phones}
{'2079460958'}
>>> typo(random.Random(1), "Smith") != "Smith"
True
"""

from __future__ import annotations

import random
import unicodedata
from typing import Final

from app.simulator.identity import STREET_TYPES, Address

NICKNAMES: Final[dict[str, tuple[str, ...]]] = {
    "William": ("Bill", "Will", "Billy"), "Robert": ("Bob", "Rob", "Bobby"),
    "Elizabeth": ("Liz", "Beth", "Lizzie"), "Katherine": ("Kate", "Kathy", "Katie"),
    "Margaret": ("Maggie", "Meg"), "Michael": ("Mike", "Mick"), "Richard": ("Rich", "Rick"),
    "Christopher": ("Chris",), "Matthew": ("Matt",), "Andrew": ("Andy", "Drew"),
    "Stephen": ("Steve",), "James": ("Jim", "Jamie"), "Thomas": ("Tom", "Tommy"),
    "Joseph": ("Joe",), "Edward": ("Ed", "Ted", "Eddie"), "Samuel": ("Sam",), "Daniel": ("Dan", "Danny"),
    "Alexander": ("Alex", "Sandy"), "Benjamin": ("Ben",), "Joshua": ("Josh",), "Jessica": ("Jess",),
    "Rebecca": ("Becky", "Becca"), "Susan": ("Sue", "Susie"), "Isabella": ("Bella", "Izzy"),
    "Charlotte": ("Lottie", "Charlie"), "Alexandra": ("Alex",), "Frederick": ("Fred",),
    "Hannah": ("Han",), "Olivia": ("Liv",), "Jacob": ("Jake",), "Archibald": ("Archie",),
}

_KEYBOARD_ROWS: Final = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: Final[dict[str, str]] = {}
for _r, _row in enumerate(_KEYBOARD_ROWS):
    for _i, _c in enumerate(_row):
        _near = [_row[j] for j in (_i - 1, _i + 1) if 0 <= j < len(_row)]
        _near += [_KEYBOARD_ROWS[r][_i] for r in (_r - 1, _r + 1) if 0 <= r < 3 and _i < len(_KEYBOARD_ROWS[r])]
        _NEIGHBOURS[_c] = "".join(_near)

# Misspelt domains seen in real sign-up data.
DOMAIN_TYPOS: Final[dict[str, tuple[str, ...]]] = {
    "gmail.com": ("gmial.com", "gmail.co", "gmai.com", "gmail.con", "gamil.com"),
    "hotmail.co.uk": ("hotmial.co.uk", "hotmail.co", "hotmail.com.uk"),
    "hotmail.com": ("hotmial.com", "hotmail.con", "homail.com"),
    "outlook.com": ("outlok.com", "outlook.co"),
    "yahoo.co.uk": ("yaho.co.uk", "yahoo.co"),
    "icloud.com": ("iclod.com", "icloud.co"),
}


def _capitalise_words(text: str) -> str:
    out, start = [], True
    for c in text:
        out.append(c.upper() if start and c.isalpha() else c)
        start = not c.isalnum()
    return "".join(out)


def email_form(rng: random.Random, email: str) -> str:
    """A case/whitespace variant of a canonical e-mail; ``strip().lower()`` restores it."""
    roll = rng.random()
    if roll < 0.45:
        return email
    local, _, domain = email.partition("@")
    label, dot, rest = domain.partition(".")
    if roll < 0.7:
        form = f"{_capitalise_words(local)}@{label.capitalize()}{dot}{rest}"
    elif roll < 0.8:
        form = email.upper()
    elif roll < 0.9:
        form = f"{local}@{domain.upper()}"
    else:
        form = email
    pad = rng.random()
    if pad < 0.3:
        return form + " "
    if pad < 0.4:
        return " " + form
    if pad < 0.45:
        return form + "\t"
    return form


def email_typo(rng: random.Random, email: str) -> str:
    """A misspelt e-mail: a mistyped domain or a letter wrong in the local part."""
    local, _, domain = email.partition("@")
    if domain in DOMAIN_TYPOS and rng.random() < 0.5:
        return f"{local}@{rng.choice(DOMAIN_TYPOS[domain])}"
    return f"{typo(rng, local)}@{domain}"


def _group(local: str, sep: str = " ") -> str:
    if len(local) == 8:
        return f"{local[:4]}{sep}{local[4:]}"
    if len(local) == 7:
        return f"{local[:3]}{sep}{local[3:]}"
    return local


def phone_form(rng: random.Random, area: str, local: str) -> str:
    """One of the ways UK numbers are written, e.g. ``020 7946 0958`` or ``+44 20 7946 0958``."""
    roll = rng.randrange(9)
    if roll == 0:
        return f"+44 {area} {_group(local)}"
    if roll == 1:
        return f"0{area} {_group(local)}"
    if roll == 2:
        return f"(0{area}) {local}"
    if roll == 3:
        return f"+44{area}{local}"
    if roll == 4:
        return f"0044 {area} {_group(local)}"
    if roll == 5:
        return f"0{area}{local}"
    if roll == 6:
        return f"0{area}-{_group(local, '-')}"
    if roll == 7:
        return f"+44 (0){area} {_group(local)}"
    return f"0{area} {_group(local)}"


def typo(rng: random.Random, text: str) -> str:
    """``text`` with one keyboard slip: swapped, dropped, doubled or neighbouring letter.

    The result always differs from ``text`` (a one-letter text gets a letter appended).
    """
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 2:
        return text + "x"
    for _ in range(8):
        i = rng.choice(letters)
        kind = rng.randrange(4)
        if kind == 0 and i + 1 < len(text):
            candidate = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        elif kind == 1:
            candidate = text[:i] + text[i + 1:]
        elif kind == 2:
            candidate = text[:i] + text[i] + text[i:]
        else:
            near = _NEIGHBOURS.get(text[i].lower())
            if not near:
                continue
            sub = rng.choice(near)
            candidate = text[:i] + (sub.upper() if text[i].isupper() else sub) + text[i + 1:]
        if candidate != text:
            return candidate
    return text[:-1] if len(text) > 2 else text + "x"


def strip_accents(text: str) -> str:
    """``text`` as systems without Unicode support store it.

    >>> strip_accents("Zoë Fernández")
    'Zoe Fernandez'
    """
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def first_name_form(rng: random.Random, first: str) -> str:
    """A first name as entered somewhere: usually as is, sometimes a nickname, initial or capitals."""
    roll = rng.random()
    if roll < 0.6:
        return first
    if roll < 0.72 and first in NICKNAMES:
        return rng.choice(NICKNAMES[first])
    if roll < 0.8:
        return first.upper()
    if roll < 0.86:
        return first.lower()
    if roll < 0.92:
        return strip_accents(first)
    if roll < 0.96:
        return f"{first[0]}."
    return f" {first}"


def last_name_form(rng: random.Random, last: str) -> str:
    """A surname as entered somewhere: usually as is, sometimes in capitals or without accents."""
    roll = rng.random()
    if roll < 0.7:
        return last
    if roll < 0.82:
        return last.upper()
    if roll < 0.88:
        return last.lower()
    if roll < 0.94:
        return strip_accents(last).replace("'", "")
    return last + " "


def street_form(rng: random.Random, address: Address) -> str:
    """``12 High Street`` or ``12 High St.``, ``12, High St``, ``12 HIGH STREET`` ..."""
    roll = rng.random()
    street_type = address.street_type
    if roll < 0.35:
        street_type = rng.choice(STREET_TYPES[street_type])
    number = f"{address.number}," if rng.random() < 0.1 else str(address.number)
    form = f"{number} {address.street_name} {street_type}"
    if rng.random() < 0.1:
        form = form.upper()
    return form


def postcode_form(rng: random.Random, postcode: str) -> str:
    """``SW1A 1AA``, ``sw1a 1aa`` or ``SW1A1AA``."""
    roll = rng.random()
    if roll < 0.65:
        return postcode
    if roll < 0.8:
        return postcode.replace(" ", "")
    if roll < 0.95:
        return postcode.lower()
    return postcode.lower().replace(" ", "")


def city_form(rng: random.Random, city: str) -> str:
    """A city as typed: as is, capitals or lower case."""
    roll = rng.random()
    if roll < 0.8:
        return city
    return city.upper() if roll < 0.9 else city.lower()
