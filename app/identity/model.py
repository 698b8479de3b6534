"""The Fellegi-Sunter match model: m/u probabilities per comparison level, a prior and thresholds.

For a pair of matching records, each field present on both sides falls into a
comparison level ``l`` (:mod:`app.identity.comparisons`) and contributes the
weight ``log2(m_l / u_l)``, where ``m_l`` is the probability of that level
among true matches and ``u_l`` among non-matches. The *match weight* is

    ``W = log2(prior / (1 - prior)) + sum of field weights``

and the match probability is ``2**W / (1 + 2**W)``. A pair at or above
``merge_probability`` merges; between ``review_probability`` and
``merge_probability`` it is reported as a ``possible_match``.

The model is configuration: it round-trips through a JSON file
(``persona identity estimate`` writes one, ``persona link --weights`` reads it).

Examples
--------
>>> model = MatchModel.default()
>>> a = {"first_name": "ann", "last_name": "lee", "date_of_birth": "1980-01-02"}
>>> b = {"first_name": "bob", "last_name": "ray"}
>>> model.field_weight_sum(a, a) > 0 > model.field_weight_sum(a, b)
True
>>> MatchModel.from_dict(model.to_dict()).to_dict() == model.to_dict()
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.identity.comparisons import DEFAULT_COMPARISONS, Comparison

FORMAT = "persona-identity-weights"
VERSION = 1

#: Generic starting values (not fitted to any data set): used when no weights file
#: is given, and as the starting point of EM. ``persona identity estimate`` replaces them.
DEFAULT_PARAMETERS: dict[str, tuple[list[float], list[float]]] = {
    "first_name": ([0.85, 0.07, 0.04, 0.04], [0.005, 0.005, 0.04, 0.95]),
    "last_name": ([0.85, 0.07, 0.04, 0.04], [0.002, 0.003, 0.03, 0.965]),
    "date_of_birth": ([0.85, 0.08, 0.03, 0.04], [0.0001, 0.001, 0.005, 0.9939]),
    "street": ([0.75, 0.1, 0.05, 0.1], [0.0005, 0.0005, 0.004, 0.995]),
    "address_line_2": ([0.7, 0.1, 0.05, 0.15], [0.001, 0.001, 0.01, 0.988]),
    "city": ([0.85, 0.07, 0.08], [0.01, 0.005, 0.985]),
    "postcode": ([0.88, 0.06, 0.06], [0.002, 0.02, 0.978]),
    "state": ([0.93, 0.07], [0.2, 0.8]),
    "loyalty_id": ([0.85, 0.1, 0.05], [0.0001, 0.001, 0.9989]),
    "email": ([0.8, 0.2], [0.0001, 0.9999]),
    "phone": ([0.75, 0.25], [0.0001, 0.9999]),
}
DEFAULT_PRIOR = 1e-4
DEFAULT_MERGE_PROBABILITY = 0.99
DEFAULT_REVIEW_PROBABILITY = 0.5
#: Probabilities are clipped to this floor so that no weight is infinite.
EPSILON = 1e-7


def odds_weight(probability: float) -> float:
    """``log2(p / (1 - p))``, the match weight of a probability.

    Examples
    --------
    >>> odds_weight(0.5), round(odds_weight(0.8), 3)
    (0.0, 2.0)
    """
    p = min(max(probability, EPSILON), 1 - EPSILON)
    return math.log2(p / (1 - p))


def weight_probability(weight: float) -> float:
    """Inverse of :func:`odds_weight`.

    Examples
    --------
    >>> weight_probability(0.0), weight_probability(2.0)
    (0.5, 0.8)
    """
    if weight > 60:
        return 1.0
    odds = 2.0**weight
    return odds / (1 + odds)


@dataclass(frozen=True)
class FieldEvidence:
    """How one field of a pair compared: level name, similarity score and weight."""

    field: str
    level: str
    score: float
    weight: float


class MatchModel:
    """m/u probabilities for each comparison level, the prior and the thresholds.

    Parameters
    ----------
    m, u
        Field → probability of each level among matches (``m``) and non-matches (``u``).
    prior
        Probability that two records picked at random are the same entity.
    merge_probability, review_probability
        Thresholds on the match probability (``review <= merge``).
    comparisons
        The field comparisons; their level counts must agree with ``m`` and ``u``.
    meta
        Free-form information about how the model was made (kept in the JSON).
    """

    def __init__(
        self,
        m: Mapping[str, Sequence[float]],
        u: Mapping[str, Sequence[float]],
        prior: float = DEFAULT_PRIOR,
        merge_probability: float = DEFAULT_MERGE_PROBABILITY,
        review_probability: float = DEFAULT_REVIEW_PROBABILITY,
        comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not 0 < prior < 1:
            raise ConfigError(f"prior must be in (0, 1), got {prior}")
        if not 0 < review_probability <= merge_probability < 1:
            raise ConfigError(
                "thresholds must satisfy 0 < review_probability <= merge_probability < 1"
            )
        self.comparisons = tuple(comparisons)
        self.m = {c.field: [float(x) for x in m[c.field]] for c in self.comparisons if c.field in m}
        self.u = {c.field: [float(x) for x in u[c.field]] for c in self.comparisons if c.field in u}
        for c in self.comparisons:
            for name, table in (("m", self.m), ("u", self.u)):
                if c.field not in table:
                    raise ConfigError(f"weights: field {c.field!r} has no {name} probabilities")
                if len(table[c.field]) != len(c.levels):
                    raise ConfigError(
                        f"weights: field {c.field!r} needs {len(c.levels)} {name} values "
                        f"(levels {list(c.levels)}), got {len(table[c.field])}"
                    )
        self.prior = float(prior)
        self.merge_probability = float(merge_probability)
        self.review_probability = float(review_probability)
        self.meta = dict(meta or {})
        self.weights: dict[str, list[float]] = {
            c.field: [
                math.log2(max(mm, EPSILON) / max(uu, EPSILON))
                for mm, uu in zip(self.m[c.field], self.u[c.field], strict=True)
            ]
            for c in self.comparisons
        }
        self._items = [(c.field, c.compare, self.weights[c.field]) for c in self.comparisons]
        self.prior_weight = odds_weight(self.prior)
        self.merge_weight = odds_weight(self.merge_probability)
        self.review_weight = odds_weight(self.review_probability)

    @classmethod
    def default(cls) -> MatchModel:
        """The generic model used when no weights file is given."""
        return cls(
            {k: v[0] for k, v in DEFAULT_PARAMETERS.items()},
            {k: v[1] for k, v in DEFAULT_PARAMETERS.items()},
        )

    def field_weight_sum(
        self, a: Mapping[str, Any], b: Mapping[str, Any], exclude: str | None = None
    ) -> float:
        """Sum of the field weights of two matching records (the prior not included)."""
        total = 0.0
        for key, compare, weights in self._items:
            va = a.get(key)
            if va is None or key == exclude:
                continue
            vb = b.get(key)
            if vb is None:
                continue
            total += weights[compare(va, vb)[0]]
        return total

    def match_weight(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
        """Prior weight plus :meth:`field_weight_sum`."""
        return self.prior_weight + self.field_weight_sum(a, b)

    def explain(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[FieldEvidence]:
        """Per-field evidence of a pair, for the ``merged``/``possible_match`` outputs.

        Examples
        --------
        >>> evidence = MatchModel.default().explain({"last_name": "lee"}, {"last_name": "li"})
        >>> [e.field for e in evidence]
        ['last_name']
        """
        out = []
        for c in self.comparisons:
            va, vb = a.get(c.field), b.get(c.field)
            if va is None or vb is None:
                continue
            level, score = c.compare(va, vb)
            out.append(
                FieldEvidence(
                    c.field, c.levels[level], round(score, 4), self.weights[c.field][level]
                )
            )
        return out

    def comparison_vector(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[int]:
        """Level index per comparison (``-1`` where a value is missing), for estimation."""
        out = []
        for c in self.comparisons:
            va, vb = a.get(c.field), b.get(c.field)
            out.append(-1 if va is None or vb is None else c.compare(va, vb)[0])
        return out

    def with_parameters(
        self,
        m: Mapping[str, Sequence[float]] | None = None,
        u: Mapping[str, Sequence[float]] | None = None,
        prior: float | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> MatchModel:
        """A copy with some parameters replaced (thresholds kept)."""
        return MatchModel(
            {**self.m, **(m or {})},
            {**self.u, **(u or {})},
            self.prior if prior is None else prior,
            self.merge_probability,
            self.review_probability,
            self.comparisons,
            {**self.meta, **(meta or {})},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the weights file."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "prior": self.prior,
            "thresholds": {
                "merge_probability": self.merge_probability,
                "review_probability": self.review_probability,
            },
            "fields": {
                c.field: {
                    "levels": list(c.levels),
                    "m": self.m[c.field],
                    "u": self.u[c.field],
                    "weights": [round(w, 4) for w in self.weights[c.field]],
                }
                for c in self.comparisons
            },
            "meta": self.meta,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS
    ) -> MatchModel:
        """Read the JSON form; raises :class:`app.errors.ConfigError` with the reason when invalid.

        Fields missing from ``data`` keep their default parameters.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError(f"weights: not a {FORMAT} document")
        if data.get("version") != VERSION:
            raise ConfigError(f"weights: unsupported version {data.get('version')!r}")
        fields = data.get("fields", {})
        thresholds = data.get("thresholds", {})
        try:
            m = {k: v[0] for k, v in DEFAULT_PARAMETERS.items()}
            u = {k: v[1] for k, v in DEFAULT_PARAMETERS.items()}
            for name, spec in fields.items():
                m[name] = [float(x) for x in spec["m"]]
                u[name] = [float(x) for x in spec["u"]]
            return cls(
                m,
                u,
                float(data.get("prior", DEFAULT_PRIOR)),
                float(thresholds.get("merge_probability", DEFAULT_MERGE_PROBABILITY)),
                float(thresholds.get("review_probability", DEFAULT_REVIEW_PROBABILITY)),
                comparisons,
                data.get("meta") or {},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"weights: invalid document ({exc})") from None

    @classmethod
    def load(cls, path: str | Path) -> MatchModel:
        """Read a weights file."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"weights: cannot read {path}: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write a weights file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
