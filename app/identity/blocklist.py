"""Junk values that must never link profiles (``test@test.com``, ``0000000000``, ``unknown`` …).

Values are compared after normalisation. A junk identifier is dropped from the
observation (it joins nothing) and the resolver reports it as ``refused`` with
rule ``refused:blocklisted``; a junk name or address is treated as missing.

Examples
--------
>>> b = Blocklist.default()
>>> b.is_junk("email", "test@test.com"), b.is_junk("email", "ann@example.com")
(True, False)
>>> b.is_junk("phone", "+441111111111"), b.is_junk("first_name", "n a")
(True, True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Values junk for every field, in normalised (lower-case, punctuation-free) form.
GENERIC_JUNK: frozenset[str] = frozenset(
    {
        "unknown",
        "n a",
        "na",
        "none",
        "null",
        "nil",
        "test",
        "tbc",
        "tba",
        "x",
        "xx",
        "xxx",
        "asdf",
        "no name",
        "noname",
        "anonymous",
        "undefined",
        "0",
        "-",
        "",
    }
)

DEFAULT_JUNK: dict[str, frozenset[str]] = {
    "email": frozenset(
        {
            "test@test.com",
            "test@example.com",
            "a@a.com",
            "noemail@noemail.com",
            "no@email.com",
            "none@none.com",
            "email@email.com",
            "unknown@unknown.com",
            "na@na.com",
            "noreply@noreply.com",
        }
    ),
    "phone": frozenset({"+441234567890", "+611234567890", "+11234567890"}),
    "user_id": frozenset({"0", "-1", "null", "none", "undefined", "anonymous", "guest", "test"}),
    "device_id": frozenset(
        {"00000000-0000-0000-0000-000000000000", "unknown", "null", "undefined", "0"}
    ),
    "anonymous_id": frozenset(
        {"00000000-0000-0000-0000-000000000000", "unknown", "null", "undefined"}
    ),
    "loyalty_id": frozenset({"0", "00000000", "NA", "NONE", "UNKNOWN", "TEST"}),
}

_LOCAL_JUNK = re.compile(r"^(test|noemail|no-?reply|none|null|unknown|asdf|fake)$")
_DIGITS = re.compile(r"\d")


@dataclass(frozen=True)
class Blocklist:
    """Junk values per field (normalised form), with built-in pattern rules.

    Pattern rules: a phone or loyalty id whose digits are all the same digit or
    a run such as ``123456789``; an e-mail whose local part is ``test``,
    ``noemail``, ``noreply``, ``none``, ``null``, ``unknown``, ``asdf`` or ``fake``.

    Parameters
    ----------
    values
        Field name → junk values, merged over :data:`DEFAULT_JUNK`.
    """

    values: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(DEFAULT_JUNK))

    @classmethod
    def default(cls) -> Blocklist:
        """The built-in list."""
        return cls()

    @classmethod
    def with_extra(cls, extra: Mapping[str, Iterable[str]]) -> Blocklist:
        """The built-in list plus ``extra`` values per field (from configuration).

        Examples
        --------
        >>> extra = Blocklist.with_extra({"email": ["nobody@shop.example"]})
        >>> extra.is_junk("email", "nobody@shop.example")
        True
        """
        merged = {k: set(v) for k, v in DEFAULT_JUNK.items()}
        for key, vals in extra.items():
            merged.setdefault(key, set()).update(vals)
        return cls({k: frozenset(v) for k, v in merged.items()})

    def is_junk(self, field_name: str, value: str) -> bool:
        """Whether a normalised ``value`` of ``field_name`` is junk."""
        if value.lower() in GENERIC_JUNK or value in self.values.get(field_name, ()):
            return True
        if field_name in ("phone", "loyalty_id"):
            digits = "".join(_DIGITS.findall(value))
            if len(digits) >= 6 and (_is_repeated(digits[-9:]) or _is_run(digits[-9:])):
                return True
        if field_name == "email":
            return bool(_LOCAL_JUNK.match(value.split("@", 1)[0]))
        return False


def _is_repeated(digits: str) -> bool:
    return len(set(digits)) == 1


def _is_run(digits: str) -> bool:
    return digits in "0123456789012" or digits in "9876543210987"
