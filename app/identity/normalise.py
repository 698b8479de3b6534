"""Normalisers: turn the clear traits of a record into comparable canonical forms.

Every function takes arbitrary text and returns the canonical string, or
``None`` when nothing usable is left. They never raise on bad input and are
idempotent (``f(f(x)) == f(x)``), which the property tests check.

Examples
--------
>>> normalise_email("  Ann.Lee+shop@GoogleMail.com ")
'annlee@gmail.com'
>>> normalise_phone("07911 123456", "GB")
'+447911123456'
>>> normalise_name("  Zoë  O'Brien-Smith ")
'zoe obrien smith'
>>> normalise_date("1956-04-09"), normalise_date("19560431")
('1956-04-09', None)
>>> normalise_postcode("sw1a 1aa")
'SW1A1AA'
>>> normalise_street("7 Wallaby Pl.")
'7 wallaby place'
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import phonenumbers

__all__ = [
    "normalise_date",
    "normalise_email",
    "normalise_id",
    "normalise_loyalty_id",
    "normalise_name",
    "normalise_phone",
    "normalise_postcode",
    "normalise_street",
]

#: Providers whose addresses ignore dots in the local part (and accept +tags).
DOT_INSENSITIVE_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
#: Providers where ``local+tag@`` is documented as delivering to ``local@``.
PLUS_TAG_DOMAINS = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "icloud.com",
        "me.com",
        "fastmail.com",
        "protonmail.com",
        "proton.me",
    }
)

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_APOSTROPHES = re.compile(r"['`\u2018\u2019\u00b4\u02bc]")
_NON_WORD = re.compile(r"[^\w]|_")
_NON_ALNUM = re.compile(r"[^0-9A-Z]")
_DATE_RE = re.compile(r"^\s*(\d{4})[-/.]?(\d{2})[-/.]?(\d{2})(?:[T\s].*)?\s*$")

#: Street-type abbreviations expanded by :func:`normalise_street`.
STREET_ABBREVIATIONS = {
    "st": "street",
    "str": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "cres": "crescent",
    "cr": "crescent",
    "pl": "place",
    "ct": "court",
    "dr": "drive",
    "ln": "lane",
    "hwy": "highway",
    "pde": "parade",
    "cct": "circuit",
    "tce": "terrace",
    "blvd": "boulevard",
    "sq": "square",
    "cl": "close",
    "gdns": "gardens",
}


def _fold(text: str) -> str:
    """NFKD, accents dropped, case-folded; repeated until stable."""
    if text.isascii():
        return text.lower()
    for _ in range(4):
        folded = unicodedata.normalize("NFKD", text)
        folded = "".join(c for c in folded if not unicodedata.combining(c)).casefold()
        if folded == text:
            break
        text = folded
    return text


def normalise_name(raw: str | None) -> str | None:
    """Lower-case, accent-free words of a person's name (or a city, state, address line).

    Apostrophes are dropped (``O'Brien`` → ``obrien``), other punctuation splits words.

    Examples
    --------
    >>> normalise_name("JOSÉ   de la  Cruz"), normalise_name(" -- ")
    ('jose de la cruz', None)
    """
    if not isinstance(raw, str):
        return None
    text = _APOSTROPHES.sub("", _fold(raw))
    text = " ".join(_NON_WORD.sub(" ", text).split())
    return text or None


def normalise_street(raw: str | None) -> str | None:
    """A street address as :func:`normalise_name` with street-type abbreviations expanded.

    Examples
    --------
    >>> normalise_street("12 Pinkerton Cct"), normalise_street("Flat 3, 5 High St")
    ('12 pinkerton circuit', 'flat 3 5 high street')
    """
    name = normalise_name(raw)
    if name is None:
        return None
    return " ".join([STREET_ABBREVIATIONS.get(w, w) for w in name.split()])


def normalise_email(raw: str | None) -> str | None:
    """Canonical e-mail address, or ``None`` when it is not one.

    Case and white space are ignored. Provider rules are applied only where the
    provider documents them: gmail/googlemail ignore dots in the local part, and
    the listed providers deliver ``local+tag@`` to ``local@``.

    Examples
    --------
    >>> normalise_email("a.b+x@gmail.com"), normalise_email("a.b+x@example.com")
    ('ab@gmail.com', 'a.b+x@example.com')
    >>> normalise_email("not an email") is None
    True
    """
    if not isinstance(raw, str):
        return None
    text = "".join(unicodedata.normalize("NFKC", raw).split()).lower()
    text = unicodedata.normalize("NFKC", text).lower()
    if not _EMAIL_RE.match(text):
        return None
    local, domain = text.rsplit("@", 1)
    domain = DOT_INSENSITIVE_DOMAINS.get(domain, domain)
    if domain in PLUS_TAG_DOMAINS:
        local = local.split("+", 1)[0]
    if domain in DOT_INSENSITIVE_DOMAINS.values():
        local = local.replace(".", "")
    if not local:
        return None
    result = f"{local}@{domain}"
    return result if _EMAIL_RE.match(result) else None


def normalise_phone(raw: str | None, default_region: str = "GB") -> str | None:
    """E.164 form of a valid phone number, or ``None``.

    Numbers without a ``+country`` prefix are read in ``default_region``.
    Numbers that :mod:`phonenumbers` does not consider valid (reserved
    fiction ranges, wrong lengths, ``0000000000``) give ``None``.

    Examples
    --------
    >>> normalise_phone("0412 345 678", "AU"), normalise_phone("+61 412 345 678", "GB")
    ('+61412345678', '+61412345678')
    >>> normalise_phone("0000000000", "GB") is None
    True
    """
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_date(raw: str | None) -> str | None:
    """ISO ``YYYY-MM-DD`` of a date given as ``YYYY-MM-DD``, ``YYYYMMDD`` or ``YYYY/MM/DD``.

    A time part after the date is ignored. Impossible dates and years outside
    1850-2100 give ``None``.

    Examples
    --------
    >>> normalise_date("2001/02/03"), normalise_date("2001-02-03T10:00:00Z")
    ('2001-02-03', '2001-02-03')
    >>> normalise_date("2001-02-30") is None
    True
    """
    if not isinstance(raw, str):
        return None
    match = _DATE_RE.match(raw)
    if not match:
        return None
    year, month, day = (int(g) for g in match.groups())
    if not 1850 <= year <= 2100:
        return None
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def normalise_postcode(raw: str | None) -> str | None:
    """Upper-case letters and digits of a postcode, separators dropped.

    Examples
    --------
    >>> normalise_postcode("ec1v 9hx"), normalise_postcode("2119"), normalise_postcode("--")
    ('EC1V9HX', '2119', None)
    """
    if not isinstance(raw, str):
        return None
    text = _NON_ALNUM.sub("", unicodedata.normalize("NFKC", raw).upper())
    return text or None


def normalise_loyalty_id(raw: str | None) -> str | None:
    """Upper-case letters and digits of a loyalty/membership number (spaces, dashes dropped).

    Examples
    --------
    >>> normalise_loyalty_id(" ab-123 456 ")
    'AB123456'
    """
    return normalise_postcode(raw)


def normalise_id(raw: str | None) -> str | None:
    """An opaque id (user id, device id, anonymous id): NFKC, outer white space dropped, case kept.

    Examples
    --------
    >>> normalise_id("  u-42 "), normalise_id("   ")
    ('u-42', None)
    """
    if not isinstance(raw, str):
        return None
    text = unicodedata.normalize("NFKC", raw).strip()
    return text or None
