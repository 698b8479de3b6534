"""Field comparisons: how two matching records agree on one field, as a discrete level.

Each comparison maps a pair of (normalised) field values to a *comparison
level* — ``0`` is the strongest agreement (exact), the last level is
``different`` — and a similarity score in ``[0, 1]`` for the evidence. The
Fellegi-Sunter model (:mod:`app.identity.model`) holds one m and one u
probability per level. A missing value on either side is no evidence (the
model skips the field).

Examples
--------
>>> c = NameComparison("first_name")
>>> c.levels
('exact', 'jaro_winkler>=0.92', 'jaro_winkler>=0.8', 'different')
>>> c.compare("martha", "martha")[0], c.compare("martha", "marhta")[0], c.compare("ann", "zoe")[0]
(0, 1, 3)
>>> DateComparison("date_of_birth").compare("1956-04-09", "1956-09-04")[0]
1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from rapidfuzz.distance import OSA, Indel, JaroWinkler

__all__ = [
    "DEFAULT_COMPARISONS",
    "AddressComparison",
    "Comparison",
    "DateComparison",
    "ExactComparison",
    "NameComparison",
    "NearIdComparison",
    "PostcodeComparison",
]


@runtime_checkable
class Comparison(Protocol):
    """The contract of a field comparison."""

    #: Key of the field in a matching record.
    field: str
    #: Level names, strongest agreement first, ``different`` last.
    levels: tuple[str, ...]

    def compare(self, a: Any, b: Any) -> tuple[int, float]:
        """Level index and similarity score of two present values."""
        ...


class NameComparison:
    """Names: exact, then Jaro-Winkler similarity thresholds, then different.

    Parameters
    ----------
    field
        Field key.
    thresholds
        Jaro-Winkler similarity lower bounds of the intermediate levels, descending.
    """

    def __init__(self, field: str, thresholds: Sequence[float] = (0.92, 0.80)) -> None:
        self.field = field
        self.thresholds = tuple(thresholds)
        self.levels = ("exact", *(f"jaro_winkler>={t:g}" for t in self.thresholds), "different")

    def compare(self, a: Any, b: Any) -> tuple[int, float]:
        if a == b:
            return 0, 1.0
        score = JaroWinkler.similarity(a, b)
        for i, t in enumerate(self.thresholds):
            if score >= t:
                return i + 1, score
        return len(self.thresholds) + 1, score


class AddressComparison:
    """Address lines: exact, then Indel similarity (with spaces ignored) thresholds, then different.

    Ignoring spaces makes ``pridhamstreet`` and ``pridham street`` agree.

    Examples
    --------
    >>> AddressComparison("street").compare("7 pridham street", "7 pridhamstreet")
    (1, 1.0)
    """

    def __init__(self, field: str, thresholds: Sequence[float] = (0.9, 0.75)) -> None:
        self.field = field
        self.thresholds = tuple(thresholds)
        self.levels = ("exact", *(f"similarity>={t:g}" for t in self.thresholds), "different")

    def compare(self, a: Any, b: Any) -> tuple[int, float]:
        if a == b:
            return 0, 1.0
        score = Indel.normalized_similarity(a.replace(" ", ""), b.replace(" ", ""))
        for i, t in enumerate(self.thresholds):
            if score >= t:
                return i + 1, score
        return len(self.thresholds) + 1, score


class DateComparison:
    """ISO dates: exact; day/month swapped or one keystroke (edit) apart; two edits; different.

    Examples
    --------
    >>> d = DateComparison("date_of_birth")
    >>> others = ("1970-01-02", "1970-02-01", "1971-01-02", "1907-10-02", "1999-12-31")
    >>> [d.compare("1970-01-02", x)[0] for x in others]
    [0, 1, 1, 2, 3]
    """

    levels: tuple[str, ...] = ("exact", "swap_or_one_edit", "two_edits", "different")

    def __init__(self, field: str) -> None:
        self.field = field

    def compare(self, a: Any, b: Any) -> tuple[int, float]:
        if a == b:
            return 0, 1.0
        if a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]:
            return 1, 0.9
        edits = OSA.distance(a, b, score_cutoff=3)
        if edits <= 1:
            return 1, 0.9
        if edits == 2:
            return 2, 0.75
        return 3, 0.0


class PostcodeComparison:
    """Postcodes and other short codes: exact, one edit, different."""

    levels: tuple[str, ...] = ("exact", "one_edit", "different")

    def __init__(self, field: str) -> None:
        self.field = field

    def compare(self, a: Any, b: Any) -> tuple[int, float]:
        if a == b:
            return 0, 1.0
        if OSA.distance(a, b, score_cutoff=2) <= 1:
            return 1, 0.8
        return 2, 0.0


class ExactComparison:
    """Exact agreement or not (state, country, hashed e-mail or phone)."""

    levels: tuple[str, ...] = ("exact", "different")

    def __init__(self, field: str) -> None:
        self.field = field

    def compare(self, a: Any, b: Any) -> tuple[int, float]:
        return (0, 1.0) if a == b else (1, 0.0)


class NearIdComparison:
    """Typed identifiers kept as ``[hash, *one-deletion-neighbourhood hashes]``.

    Exact when the hashes agree, ``one_edit`` when the neighbourhoods
    intersect (see :meth:`app.identity.hashing.IdentifierHasher.near_hashes`),
    else different — without ever seeing the identifier in clear.

    Examples
    --------
    >>> NearIdComparison("loyalty_id").compare(["h1", "a", "b"], ["h2", "b", "c"])
    (1, 0.8)
    """

    levels: tuple[str, ...] = ("exact", "one_edit", "different")

    def __init__(self, field: str) -> None:
        self.field = field

    def compare(self, a: Any, b: Any) -> tuple[int, float]:
        if a[0] == b[0]:
            return 0, 1.0
        if not set(a[1:]).isdisjoint(b[1:]):
            return 1, 0.8
        return 2, 0.0


#: The comparisons of the default model, in evidence order.
DEFAULT_COMPARISONS: tuple[Comparison, ...] = (
    NameComparison("first_name"),
    NameComparison("last_name"),
    DateComparison("date_of_birth"),
    AddressComparison("street"),
    AddressComparison("address_line_2"),
    NameComparison("city", (0.92,)),
    PostcodeComparison("postcode"),
    ExactComparison("state"),
    NearIdComparison("loyalty_id"),
    ExactComparison("email"),
    ExactComparison("phone"),
)
