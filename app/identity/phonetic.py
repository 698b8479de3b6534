"""Phonetic codes of names, used to build blocking keys that survive spelling variants.

American Soundex of the first word: first letter plus three digits.

Examples
--------
>>> soundex("robert"), soundex("rupert"), soundex("tymczak"), soundex("pfister")
('R163', 'R163', 'T522', 'P236')
>>> soundex("")
''
"""

from __future__ import annotations

from functools import lru_cache

_CODES = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}


@lru_cache(maxsize=65536)
def soundex(name: str) -> str:
    """Soundex code of the first word of a normalised name, or ``''`` if it has no a-z letter.

    Parameters
    ----------
    name
        A name as returned by :func:`app.identity.normalise.normalise_name`.

    Examples
    --------
    >>> soundex("mc carthy"), soundex("ashcraft")
    ('M200', 'A261')
    """
    word = name.split(" ", 1)[0] if name else ""
    letters = [c for c in word if "a" <= c <= "z"]
    if not letters:
        return ""
    first = letters[0]
    out = [first.upper()]
    last = _CODES.get(first, "")
    for c in letters[1:]:
        code = _CODES.get(c, "")
        if code and code != last:
            out.append(code)
            if len(out) == 4:
                break
        if c not in "hw":
            last = code
    return "".join(out).ljust(4, "0")
