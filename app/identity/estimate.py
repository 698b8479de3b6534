"""Estimating the match model from data: EM without labels, or counts from labelled pairs.

Unsupervised (:func:`estimate`), in the manner of Splink:

1. **u** (agreement among non-matches) from the data itself: the exact level
   from value frequencies (``sum of p_v**2``, exact and cheap), the other levels
   from comparisons of randomly drawn record pairs that are not exact.
2. **m** (agreement among matches) by expectation-maximisation over the pairs of
   each *training rule* (records agreeing exactly on some fields: date of birth;
   surname + postcode; …), with u fixed. A rule says nothing about the fields it
   blocks on, so those are left out of its likelihood; each field's m is the
   mean over the rules that estimated it.
3. The **prior** (probability that two random records match): each rule's EM
   estimates how many matches it holds; divided by the rule's recall (the
   product of the exact-level m of its fields) that extrapolates to all
   matches, over all ``n(n-1)/2`` pairs.

Supervised (:func:`estimate_from_labels`): m and u are the level frequencies
among labelled matches and non-matches.

Fields without enough data keep the parameters of the base model.

Examples
--------
>>> rows = [("ann", "lee", "1980-01-02", "2000"), ("anne", "lee", "1980-01-02", "2000"),
...         ("bob", "ray", "1970-03-04", "3000"), ("rob", "ray", "1970-03-04", "3000"),
...         ("cy", "fox", "1990-05-06", "4000"), ("dee", "kim", "1960-07-08", "5000")]
>>> recs = [dict(zip(("first_name", "last_name", "date_of_birth", "postcode"), r)) for r in rows]
>>> model = estimate(recs, min_matches=0.5)
>>> model.weights["last_name"][0] > 0 > model.weights["last_name"][-1]
True
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.identity.config import ResolverConfig
from app.identity.hashing import IdentifierHasher
from app.identity.model import MatchModel
from app.identity.observation import observe_crm

Traits = Mapping[str, Any]


@dataclass(frozen=True)
class TrainingRule:
    """Records agreeing exactly on ``fields`` form the pairs one EM run is trained on."""

    name: str
    fields: tuple[str, ...]

    def key(self, traits: Traits) -> tuple[Any, ...] | None:
        values = []
        for f in self.fields:
            v = traits.get(f)
            if v is None:
                return None
            values.append(v[0] if isinstance(v, list) else v)
        return tuple(values)


#: Default training rules: each field is left out by at least one rule.
TRAINING_RULES: tuple[TrainingRule, ...] = (
    TrainingRule("date_of_birth", ("date_of_birth",)),
    TrainingRule("last_name+postcode", ("last_name", "postcode")),
    TrainingRule("first_name+last_name", ("first_name", "last_name")),
)


def _exact_value(v: Any) -> Any:
    return v[0] if isinstance(v, list) else v


def estimate_u(
    traits: Sequence[Traits], model: MatchModel, pairs: int = 5_000, seed: int = 0
) -> dict[str, list[float]]:
    """u probabilities per field from value frequencies and random pairs.

    Fields with fewer than two values keep the model's u.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {}
    for comp in model.comparisons:
        values = [t[comp.field] for t in traits if t.get(comp.field) is not None]
        n = len(values)
        if n < 2:
            continue
        counts = Counter(_exact_value(v) for v in values)
        # probability that two distinct records agree exactly
        u_exact = sum(c * (c - 1) for c in counts.values()) / (n * (n - 1))
        levels = len(comp.levels)
        tally = [0] * levels
        drawn = 0
        compare = comp.compare
        for a, b in rng.integers(0, n, size=(pairs, 2)).tolist():
            if a == b:
                continue
            level = compare(values[a], values[b])[0]
            if level:
                tally[level] += 1
                drawn += 1
        # distribution of the non-exact levels, smoothed with half a pseudo-count each
        rest = 1.0 - u_exact
        smooth = [(tally[i] + 0.5) / (drawn + 0.5 * (levels - 1)) for i in range(1, levels)]
        floor = 1.0 / max(n * n, 1)
        out[comp.field] = [max(u_exact, floor), *(max(rest * s, floor) for s in smooth)]
        total = sum(out[comp.field])
        out[comp.field] = [x / total for x in out[comp.field]]
    return out


def rule_pairs(
    traits: Sequence[Traits], rule: TrainingRule, max_group: int = 50
) -> tuple[list[tuple[int, int]], int]:
    """Pairs agreeing on the rule's fields (groups over ``max_group`` skipped), and their count."""
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, t in enumerate(traits):
        k = rule.key(t)
        if k is not None:
            groups[k].append(i)
    pairs: list[tuple[int, int]] = []
    for members in groups.values():
        if 2 <= len(members) <= max_group:
            pairs.extend((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return pairs, len(pairs)


def comparison_matrix(
    traits: Sequence[Traits], pairs: Sequence[tuple[int, int]], model: MatchModel
) -> np.ndarray:
    """Level per pair and comparison (``-1`` where missing), as an ``int8`` matrix."""
    comps = [(c.field, c.compare) for c in model.comparisons]
    rows: list[list[int]] = []
    for a, b in pairs:
        ta, tb = traits[a], traits[b]
        row = []
        for f, compare in comps:
            va, vb = ta.get(f), tb.get(f)
            row.append(-1 if va is None or vb is None else compare(va, vb)[0])
        rows.append(row)
    return np.array(rows, dtype=np.int8).reshape(len(pairs), len(comps))


def em(
    matrix: np.ndarray,
    m: Sequence[Sequence[float]],
    u: Sequence[Sequence[float]],
    use: Sequence[bool],
    prior: float = 0.5,
    iterations: int = 40,
    tolerance: float = 1e-6,
) -> tuple[list[list[float]], float]:
    """Fellegi-Sunter EM with u fixed: returns (m per comparison, share of matches among the pairs).

    Comparisons with ``use[j]`` false are left out of the likelihood and keep their m.
    """
    m_est = [list(map(float, x)) for x in m]
    cols = [j for j, flag in enumerate(use) if flag]
    log_u = {j: np.log(np.maximum(np.asarray(u[j], dtype=float), 1e-12)) for j in cols}
    present = {j: matrix[:, j] >= 0 for j in cols}
    index = {j: np.where(present[j], matrix[:, j], 0) for j in cols}
    lam = prior
    for _ in range(iterations):
        score = np.full(matrix.shape[0], math.log(lam / (1 - lam)))
        for j in cols:
            log_m = np.log(np.maximum(np.asarray(m_est[j], dtype=float), 1e-12))
            score += np.where(present[j], log_m[index[j]] - log_u[j][index[j]], 0.0)
        post = 1.0 / (1.0 + np.exp(-np.clip(score, -60, 60)))
        new_lam = float(np.clip(post.mean(), 1e-6, 1 - 1e-6))
        delta = abs(new_lam - lam)
        lam = new_lam
        for j in cols:
            levels = len(m_est[j])
            weight = post * present[j]
            total = float(weight.sum())
            if total <= 0:
                continue
            counts = np.bincount(index[j], weights=weight, minlength=levels)[:levels]
            new = (counts + 0.01) / (total + 0.01 * levels)
            delta = max(delta, float(np.abs(new - np.asarray(m_est[j])).max()))
            m_est[j] = [float(x) for x in new]
        if delta < tolerance:
            break
    return m_est, lam


def estimate(
    traits: Sequence[Traits],
    base: MatchModel | None = None,
    rules: Sequence[TrainingRule] = TRAINING_RULES,
    u_pairs: int = 5_000,
    max_pairs: int = 5_000,
    min_matches: float = 10.0,
    seed: int = 0,
) -> MatchModel:
    """Fit m, u and the prior of ``base`` (default model) to matching records, without labels.

    Parameters
    ----------
    traits
        Matching records (``Observation.traits``).
    base
        Starting model: its comparisons, thresholds, and the parameters of fields
        the data cannot inform.
    rules
        Training rules (see :data:`TRAINING_RULES`).
    u_pairs
        Random pairs drawn per field for the non-exact u levels.
    max_pairs
        Most pairs of one rule used by EM (a uniform sample).
    min_matches
        A rule whose EM finds fewer matches than this is ignored.
    seed
        Seed of the sampling (the estimate is deterministic for a given input).
    """
    model = base or MatchModel.default()
    rng = random.Random(seed)
    n = len(traits)
    u_new = estimate_u(traits, model, u_pairs, seed)
    model = model.with_parameters(u=u_new)
    fields = [c.field for c in model.comparisons]
    m_sum: dict[str, list[np.ndarray]] = defaultdict(list)
    matches_per_rule: list[tuple[TrainingRule, float]] = []
    info: dict[str, Any] = {"records": n, "rules": {}}
    for rule in rules:
        pairs, total = rule_pairs(traits, rule)
        if not pairs:
            continue
        sample = pairs if len(pairs) <= max_pairs else rng.sample(pairs, max_pairs)
        matrix = comparison_matrix(traits, sample, model)
        use = [f not in rule.fields for f in fields]
        m_fit, lam = em(
            matrix,
            [model.m[f] for f in fields],
            [model.u[f] for f in fields],
            use,
        )
        matches = lam * total
        info["rules"][rule.name] = {
            "pairs": total,
            "sampled": len(sample),
            "match_share": round(lam, 6),
        }
        if matches < min_matches:
            continue
        matches_per_rule.append((rule, matches))
        for j, f in enumerate(fields):
            if use[j] and bool((matrix[:, j] >= 0).any()):
                m_sum[f].append(np.asarray(m_fit[j]))
    m_new = {f: [float(x) for x in np.mean(v, axis=0)] for f, v in m_sum.items()}
    model = model.with_parameters(m=m_new)
    prior = model.prior
    if matches_per_rule and n > 1:
        estimates = []
        for rule, matches in matches_per_rule:
            recall = math.prod(model.m[f][0] for f in rule.fields)
            estimates.append(matches / max(recall, 1e-3))
        prior = min(max(float(np.mean(estimates)) / (n * (n - 1) / 2), 1e-9), 0.5)
    info["estimated_matches"] = round(prior * n * (n - 1) / 2, 1)
    return model.with_parameters(prior=prior, meta={"method": "em", **info})


def estimate_from_labels(
    traits_by_id: Mapping[str, Traits],
    labelled: Iterable[tuple[str, str, bool]],
    base: MatchModel | None = None,
    prior: float | None = None,
) -> MatchModel:
    """m (and u, given at least 100 labelled non-matches) as level frequencies of labelled pairs.

    Pairs naming unknown record ids are ignored. Fields without labelled
    evidence keep the base parameters.

    Examples
    --------
    >>> recs = {"1": {"last_name": "lee"}, "2": {"last_name": "lea"}, "3": {"last_name": "fox"}}
    >>> model = estimate_from_labels(recs, [("1", "2", True), ("1", "3", False)])
    >>> round(sum(model.m["last_name"]), 6)
    1.0
    """
    model = base or MatchModel.default()
    tallies: dict[bool, dict[str, list[float]]] = {
        True: {c.field: [0.0] * len(c.levels) for c in model.comparisons},
        False: {c.field: [0.0] * len(c.levels) for c in model.comparisons},
    }
    counts = {True: 0, False: 0}
    for a, b, is_match in labelled:
        ta, tb = traits_by_id.get(a), traits_by_id.get(b)
        if ta is None or tb is None:
            continue
        counts[is_match] += 1
        for c, level in zip(model.comparisons, model.comparison_vector(ta, tb), strict=True):
            if level >= 0:
                tallies[is_match][c.field][level] += 1

    def freq(table: dict[str, list[float]]) -> dict[str, list[float]]:
        out = {}
        for f, t in table.items():
            total = sum(t)
            if total > 0:
                out[f] = [(x + 0.01) / (total + 0.01 * len(t)) for x in t]
        return out

    m = freq(tallies[True])
    u = freq(tallies[False]) if counts[False] >= 100 else {}
    meta = {"method": "labels", "matches": counts[True], "non_matches": counts[False]}
    return model.with_parameters(m=m, u=u, prior=prior, meta=meta)


def observe_lines(
    lines: Iterable[str | bytes],
    secret: str,
    config: ResolverConfig | None = None,
    validate: Callable[[Any], None] | None = None,
) -> tuple[list[tuple[str, Traits]], list[tuple[int, str]]]:
    """``(record_id, matching record)`` of good JSONL lines, ``(line, error)`` of bad ones."""
    from app.identity.link import iter_observed

    hasher, cfg = IdentifierHasher(secret), config or ResolverConfig()
    bad: list[tuple[int, str]] = []
    observed = iter_observed(lines, lambda record: observe_crm(record, hasher, cfg), validate, bad)
    return [(record_id, obs.traits) for record_id, obs in observed], bad


def estimate_from_lines(
    lines: Iterable[str | bytes],
    secret: str,
    base: MatchModel | None = None,
    config: ResolverConfig | None = None,
    validate: Callable[[Any], None] | None = None,
) -> MatchModel:
    """:func:`estimate` over a JSONL file of ``crm-profiles`` records (bad lines skipped)."""
    good, _ = observe_lines(lines, secret, config, validate)
    return estimate([t for _, t in good], base)
