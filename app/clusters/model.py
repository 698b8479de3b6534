"""Online clustering of profiles (River) with stable cluster ids, readable labels and JSON state.

:class:`ClusterModel` standardises profile feature vectors with
:class:`river.preprocessing.StandardScaler` and clusters them with
:class:`river.cluster.KMeans`, one ``learn_one`` per profile update.

Start-up (warm-up)
    River's k-means starts from random centres, which converge slowly and can
    leave clusters empty. The model therefore buffers the first ``warmup`` vectors,
    then seeds the centres with k-means++ and Lloyd iterations on that
    standardised buffer (best inertia of ``n_init`` seedings), and from then on learns online (each ``learn_one`` moves
    the nearest centre by ``halflife`` of the way to the point: an exponential
    moving average that follows drift). ``predict_one`` is ``None`` until then.
Choosing k
    ``k`` fixed by configuration, or ``k=None``: the k in ``k_range`` with the best
    silhouette of the seeded clustering on the warm-up buffer (:func:`choose_k`),
    chosen again at each re-seeding (new centres get new ids; vanished ones' ids retire).
    The benchmark found silhouette prefers fewer clusters than the six archetypes
    (``docs/benchmarks.md``), so production should configure ``k``.
Periodic re-seeding
    With ``reseed_every=N`` the model re-seeds its centres every N learned vectors
    from the last N (k-means++ and Lloyd on that recent sample), then goes on
    learning online. Without it, online k-means lags behind profiles whose features
    move with time (recency, tenure) and can strand centres.
Stable ids
    Internal centre indices are mapped to stable ids. :meth:`ClusterModel.reseed`
    (periodic re-seeding, or on demand from the reservoir, e.g. when quality drops) computes
    new centres in a new order; each new centre takes the id of the old centre it is
    matched to by minimum total distance (Hungarian: :func:`match_ids`, with
    :func:`scipy.optimize.linear_sum_assignment`, greedy if SciPy is missing), so a
    customer does not change segment because of a relabelling. Unmatched centres get new ids.
Hysteresis
    :meth:`ClusterModel.assign` keeps a profile in its current cluster unless the
    nearest other centre is closer by more than ``margin`` (relative distance).
Labels
    From the dominant standardised features of each centre (``|z| >= 0.5``, at most
    two, strongest first), through a vocabulary (``frequency`` -> ``frequent`` /
    ``infrequent``; ``monetary`` -> ``high_spender`` / ``low_spender`` …), e.g.
    ``frequent_high_spender``; ``average`` when no feature stands out.
Persistence
    :meth:`ClusterModel.to_json` / :meth:`ClusterModel.from_json`: plain JSON (floats
    round-trip exactly), restoring identical predictions and ids.
Quality
    :meth:`ClusterModel.quality`: silhouette on the reservoir sample, cluster sizes
    in it, centre drift since the previous call: numbers to export as metrics.

Examples
--------
>>> import random
>>> rng = random.Random(1)
>>> points = [{"a": rng.gauss(m, 0.3), "b": rng.gauss(m, 0.3)} for m in (0, 5) * 100]
>>> model = ClusterModel(["a", "b"], k=2, warmup=50, seed=0)
>>> for p in points:
...     model.learn_one(p)
>>> model.predict_one({"a": 0, "b": 0}) != model.predict_one({"a": 5, "b": 5})
True
>>> twin = ClusterModel.from_json(model.to_json())
>>> all(twin.predict_one(p) == model.predict_one(p) for p in points)
True
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from river import cluster, preprocessing

from app.segments.evaluate import Decision

#: Words for a feature that is high / low in a centre (``high_<name>`` / ``low_<name>`` otherwise).
LABEL_WORDS: dict[str, tuple[str, str]] = {
    "frequency": ("frequent", "infrequent"),
    "monetary": ("high_spender", "low_spender"),
    "recency_days": ("lapsing", "recent"),
    "aov": ("big_basket", "small_basket"),
    "views": ("browser", "light_browser"),
    "cart_adds": ("cart_filler", "few_carts"),
    "abandon_rate": ("abandoner", "finisher"),
    "searches": ("searcher", "few_searches"),
    "tenure_days": ("long_standing", "new"),
    # The profile core's names (app/profiles/features.py), which the stream clusters on.
    "orders_decayed": ("frequent", "infrequent"),
    "revenue_decayed_log": ("high_spender", "low_spender"),
    "purchase_recency_days": ("lapsed_buyer", "recent_buyer"),
    "activity_decayed_log": ("engaged", "quiet"),
    "purchase_frequency_30d": ("regular_buyer", "rare_buyer"),
    "email_opens_decayed": ("email_reader", "email_ignorer"),
    "email_click_to_open": ("email_clicker", "email_non_clicker"),
    "cart_abandonments": ("cart_abandoner", "few_abandoned_carts"),
    "cart_abandon_rate": ("abandoner", "finisher"),
    "lifetime_events_log": ("heavy_user", "light_user"),
    "quality_bot": ("bot_like", "human"),
}

Vector = Mapping[str, float]


# --------------------------------------------------------------------------- numpy helpers


def kmeans_fit(z: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding and Lloyd iterations on rows of ``z``; returns (centres, labels).

    Deterministic for a given ``seed``. Used to seed the online model on the warm-up sample.
    """
    rng = np.random.default_rng(seed)
    n = len(z)
    k = max(1, min(k, n))
    centres = [z[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((z[:, None, :] - np.array(centres)[None, :, :]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        centres.append(z[rng.choice(n, p=d2 / total)] if total > 0 else z[rng.integers(n)])
    c = np.array(centres, dtype=float)
    labels = np.zeros(n, dtype=int)
    for _ in range(iterations):
        labels = ((z[:, None, :] - c[None, :, :]) ** 2).sum(-1).argmin(axis=1)
        new = np.array([z[labels == j].mean(axis=0) if np.any(labels == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c, labels


def silhouette(z: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Mean silhouette coefficient (Euclidean), as :func:`sklearn.metrics.silhouette_score`.

    ``nan`` when there are fewer than two clusters or fewer than three points.

    >>> silhouette(np.array([[0.0], [0.1], [5.0], [5.1]]), [0, 0, 1, 1]) > 0.9
    True
    """
    lab = np.asarray(labels)
    uniq = np.unique(lab)
    if len(uniq) < 2 or len(z) < 3 or len(uniq) >= len(z):
        return float("nan")
    d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    s = np.zeros(len(z))
    for i in range(len(z)):
        same = lab == lab[i]
        n_same = same.sum() - 1
        if n_same == 0:
            continue  # a singleton's silhouette is 0
        a = d[i, same].sum() / n_same
        b = min(d[i, lab == other].mean() for other in uniq if other != lab[i])
        s[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(s.mean())


def kmeans_best_of(z: np.ndarray, k: int, seed: int = 0, n_init: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The lowest-inertia result of :func:`kmeans_fit` over ``n_init`` seeds (``seed``, ``seed + 1`` …)."""
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for i in range(max(1, n_init)):
        centres, labels = kmeans_fit(z, k, seed + i)
        inertia = float(((z - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, centres, labels)
    assert best is not None
    return best[1], best[2]


def choose_k(z: np.ndarray, k_range: tuple[int, int], seed: int = 0) -> tuple[int, dict[int, float]]:
    """The k in ``k_range`` (inclusive) whose seeded clustering of ``z`` has the best silhouette."""
    scores = {}
    for k in range(k_range[0], k_range[1] + 1):
        _, labels = kmeans_fit(z, k, seed)
        scores[k] = silhouette(z, labels)
    valid = {k: s for k, s in scores.items() if not math.isnan(s)}
    return (max(valid, key=lambda k: (valid[k], -k)) if valid else k_range[0]), scores


def match_ids(
    old: Mapping[int, Sequence[float]], new: Sequence[Sequence[float]], next_id: int
) -> tuple[list[int], int]:
    """Stable ids for ``new`` centres: each takes the id of the old centre matched to it.

    Minimum total Euclidean distance (Hungarian; greedy closest-pair-first when SciPy
    is not installed). New centres left unmatched get fresh ids from ``next_id``.
    Returns the ids in the order of ``new`` and the next free id.

    >>> match_ids({7: [0.0, 0.0], 9: [5.0, 5.0]}, [[5.1, 4.9], [0.2, 0.0], [9.0, 9.0]], next_id=10)
    ([9, 7, 10], 11)
    """
    old_ids = list(old)
    ids: list[int | None] = [None] * len(new)
    if old_ids and len(new):
        cost = np.array([[math.dist(old[o], c) for o in old_ids] for c in new])
        for r, c in _assignment(cost):
            ids[r] = old_ids[c]
    out = []
    for i in ids:
        if i is None:
            i, next_id = next_id, next_id + 1
        out.append(i)
    return out, next_id


def _assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # pragma: no cover - scipy comes with river
        pairs = sorted((cost[r, c], r, c) for r in range(cost.shape[0]) for c in range(cost.shape[1]))
        rows: set[int] = set()
        cols: set[int] = set()
        out = []
        for _, r, c in pairs:
            if r not in rows and c not in cols:
                rows.add(r)
                cols.add(c)
                out.append((r, c))
        return out
    r, c = linear_sum_assignment(cost)
    return [(int(a), int(b)) for a, b in zip(r, c, strict=True)]


# --------------------------------------------------------------------------- the model


class ClusterModel:
    """Scaler + River k-means over named features, with stable ids (see the module docstring).

    Parameters
    ----------
    features
        Feature names forming the vector (a missing one counts as 0).
    k
        Number of clusters; ``None`` chooses it by silhouette in ``k_range`` at warm-up.
    k_range
        Inclusive range searched when ``k`` is ``None``.
    halflife
        River's step towards each new point (0-1): small is stable, large follows drift fast.
    warmup
        Vectors buffered before the centres are seeded.
    reservoir_size
        Size of the uniform reservoir sample kept for quality and re-seeding.
    margin
        Hysteresis of :meth:`assign` (relative distance).
    seed
        Seed of every random choice (seeding, reservoir).
    n_init
        Seedings tried at warm-up (and re-seeding); the lowest inertia is kept.
    reseed_every
        When > 0, every that many learned vectors (after warm-up) the centres are
        re-seeded from the last ``reseed_every`` vectors, ids kept stable
        (:meth:`reseed`). Online k-means alone lets centres lag behind profiles whose
        features move with time and strands centres that lost their points; the
        benchmark measures the difference (``docs/benchmarks.md``). The window is
        part of the saved state (``reseed_every`` x features floats).
    """

    def __init__(
        self,
        features: Sequence[str],
        k: int | None = None,
        k_range: tuple[int, int] = (2, 8),
        halflife: float = 0.02,
        warmup: int = 300,
        reservoir_size: int = 500,
        margin: float = 0.1,
        seed: int = 0,
        n_init: int = 5,
        reseed_every: int = 0,
    ) -> None:
        if not features:
            raise ValueError("at least one feature is needed")
        if k is not None and k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if k_range[0] < 2 or k_range[1] < k_range[0]:
            raise ValueError(f"k_range must be (low >= 2, high >= low), got {k_range}")
        self.features = list(features)
        self.k = k
        self.k_range = (int(k_range[0]), int(k_range[1]))
        self.halflife = halflife
        self.warmup = max(1, warmup)
        self.reservoir_size = reservoir_size
        self.margin = margin
        self.seed = seed
        self.n_init = n_init
        self.reseed_every = max(0, reseed_every)
        self.recent: deque[list[float]] = deque(maxlen=max(self.reseed_every, 1))
        self.scaler = preprocessing.StandardScaler()
        self.kmeans: cluster.KMeans | None = None
        self.ids: list[int] = []
        self.next_id = 0
        self.buffer: list[list[float]] = []
        self.reservoir: list[list[float]] = []
        self.seen = 0
        self._rng = random.Random(seed)
        self._drift_base: dict[int, list[float]] = {}
        self.k_scores: dict[int, float] = {}

    # -- vectors

    def _raw(self, x: Vector) -> list[float]:
        return [float(x.get(f, 0.0) or 0.0) for f in self.features]

    def _scaled(self, raw: Sequence[float]) -> dict[str, float]:
        return dict(self.scaler.transform_one(dict(zip(self.features, raw, strict=True))))

    @property
    def ready(self) -> bool:
        """Whether the centres are seeded (``predict_one`` answers)."""
        return self.kmeans is not None

    # -- learning

    def learn_one(self, x: Vector) -> None:
        """Learn from one profile's feature vector."""
        raw = self._raw(x)
        self.scaler.learn_one(dict(zip(self.features, raw, strict=True)))
        self.seen += 1
        if len(self.reservoir) < self.reservoir_size:
            self.reservoir.append(raw)
        else:
            j = self._rng.randrange(self.seen)
            if j < self.reservoir_size:
                self.reservoir[j] = raw
        if self.reseed_every:
            self.recent.append(raw)
        if self.kmeans is None:
            self.buffer.append(raw)
            if len(self.buffer) >= self.warmup:
                self._seed_from(self.buffer)
                self.buffer = []
            return
        self.kmeans.learn_one(self._scaled(raw))
        if self.reseed_every and (self.seen - self.warmup) % self.reseed_every == 0:
            self._seed_from(list(self.recent))

    def _seed_from(self, sample: Sequence[Sequence[float]]) -> None:
        z = np.array([[v[f] for f in self.features] for v in (self._scaled(r) for r in sample)])
        k = self.k
        if k is None:
            k, self.k_scores = choose_k(z, self.k_range, self.seed)
        centres, _ = kmeans_best_of(z, k, self.seed, self.n_init)
        old = self.centres()
        km = cluster.KMeans(n_clusters=len(centres), halflife=self.halflife, seed=self.seed)
        for i, c in enumerate(centres):
            km.centers[i].update(zip(self.features, (float(v) for v in c), strict=True))
        self.kmeans = km
        self.ids, self.next_id = match_ids(old, centres.tolist(), self.next_id)
        if not self._drift_base:
            self._drift_base = self.centres()

    def reseed(self, sample: Sequence[Vector] | None = None) -> set[int]:
        """Re-seed the centres from ``sample`` (default: the reservoir), keeping ids stable.

        A recent sample (e.g. the last day's profile vectors) follows drift and revives
        centres that lost all their points. Returns the ids kept from before.
        """
        raws = self.reservoir if sample is None else [self._raw(x) for x in sample]
        if not raws:
            return set()
        before = set(self.ids)
        self._seed_from(raws)
        return {i for i in self.ids if i in before}

    # -- prediction

    def centres(self) -> dict[int, list[float]]:
        """Stable id -> centre in standardised units (feature order of ``features``)."""
        if self.kmeans is None:
            return {}
        return {
            self.ids[i]: [float(c.get(f, 0.0)) for f in self.features] for i, c in self.kmeans.centers.items()
        }

    def _distances(self, x: Vector) -> dict[int, float]:
        z = self._scaled(self._raw(x))
        point = [z[f] for f in self.features]
        return {cid: math.dist(point, c) for cid, c in self.centres().items()}

    def predict_one(self, x: Vector) -> int | None:
        """Stable id of the nearest centre, or ``None`` before warm-up ends."""
        if self.kmeans is None:
            return None
        d = self._distances(x)
        return min(d, key=lambda c: (d[c], c))

    def assign(self, x: Vector, current: int | None = None) -> tuple[int, float, int | None] | None:
        """(cluster id, distance to it, nearest other id) with hysteresis towards ``current``.

        The profile stays in ``current`` unless another centre is nearer by more than
        ``margin`` of the distance to ``current``. ``None`` before warm-up ends.
        """
        if self.kmeans is None:
            return None
        d = self._distances(x)
        ranked = sorted(d, key=lambda c: (d[c], c))
        best = ranked[0]
        if current is not None and current in d and current != best and d[best] >= d[current] * (1 - self.margin):
            best = current
        other = next((c for c in ranked if c != best), None)
        return best, d[best], other

    def decision(self, x: Vector, current: int | None = None) -> Decision | None:
        """The cluster segment of a profile as a :class:`~app.segments.evaluate.Decision`.

        Segment id ``cluster-<id>``, reason ``{"cluster", "label", "distance", "nearest_cluster"}``.
        """
        a = self.assign(x, current)
        if a is None:
            return None
        cid, dist, other = a
        reason = {"cluster": cid, "label": self.labels()[cid], "distance": round(dist, 4), "nearest_cluster": other}
        return Decision(f"cluster-{cid}", "cluster", reason)

    def labels(self, words: Mapping[str, tuple[str, str]] = LABEL_WORDS, threshold: float = 0.5) -> dict[int, str]:
        """Stable id -> readable label from the centre's dominant standardised features."""
        out: dict[int, str] = {}
        for cid, c in sorted(self.centres().items()):
            strong = sorted(
                ((abs(v), f, v) for f, v in zip(self.features, c, strict=True) if abs(v) >= threshold), reverse=True
            )[:2]
            parts = []
            for _, f, v in strong:
                high, low = words.get(f, (f"high_{f}", f"low_{f}"))
                parts.append(high if v > 0 else low)
            label = "_".join(parts) or "average"
            if label in out.values():
                label = f"{label}_{cid}"
            out[cid] = label
        return out

    # -- quality

    def quality(self, update_drift_base: bool = True) -> dict[str, Any]:
        """Silhouette and sizes on the reservoir sample, and centre drift since the last call.

        Returns ``{"silhouette": float, "sizes": {id: n}, "drift_mean": float,
        "drift_max": float, "k": int}`` (drift in standardised units; ``nan``
        silhouette when it is undefined, e.g. before warm-up).
        """
        centres = self.centres()
        if not centres:
            return {"silhouette": float("nan"), "sizes": {}, "drift_mean": 0.0, "drift_max": 0.0, "k": 0}
        z = np.array([[v[f] for f in self.features] for v in (self._scaled(r) for r in self.reservoir)])
        ids = list(centres)
        c = np.array([centres[i] for i in ids])
        labels = ((z[:, None, :] - c[None, :, :]) ** 2).sum(-1).argmin(axis=1) if len(z) else np.array([], int)
        sizes = {i: int((labels == j).sum()) for j, i in enumerate(ids)}
        moves = [math.dist(centres[i], self._drift_base[i]) for i in ids if i in self._drift_base]
        if update_drift_base:
            self._drift_base = centres
        return {
            "silhouette": silhouette(z, [ids[j] for j in labels]) if len(z) else float("nan"),
            "sizes": sizes,
            "drift_mean": float(np.mean(moves)) if moves else 0.0,
            "drift_max": float(max(moves)) if moves else 0.0,
            "k": len(ids),
        }

    # -- persistence

    def to_json(self) -> dict[str, Any]:
        """The whole model as plain JSON (``json.dumps`` it for a table or a checkpoint)."""
        km = self.kmeans
        return {
            "version": 1,
            "features": self.features,
            "params": {
                "k": self.k, "k_range": list(self.k_range), "halflife": self.halflife, "warmup": self.warmup,
                "reservoir_size": self.reservoir_size, "margin": self.margin, "seed": self.seed, "n_init": self.n_init,
                "reseed_every": self.reseed_every,
            },
            "scaler": {
                "counts": dict(self.scaler.counts),
                "means": dict(self.scaler.means),
                "vars": dict(self.scaler.vars),
            },
            "centres": None if km is None else [[km.centers[i].get(f, 0.0) for f in self.features]
                                                for i in sorted(km.centers)],
            "kmeans_rng": None if km is None else _rng_state(km._rng),
            "ids": self.ids,
            "next_id": self.next_id,
            "buffer": self.buffer,
            "recent": list(self.recent),
            "reservoir": self.reservoir,
            "seen": self.seen,
            "rng": _rng_state(self._rng),
            "drift_base": {str(k): v for k, v in self._drift_base.items()},
            "k_scores": {str(k): None if math.isnan(v) else v for k, v in self.k_scores.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterModel:
        """Restore a model saved by :meth:`to_json` (also accepts its ``json.dumps`` text)."""
        if isinstance(data, str | bytes):
            data = json.loads(data)
        if data.get("version") != 1:
            raise ValueError(f"unsupported cluster model version {data.get('version')!r}")
        p = data["params"]
        m = cls(data["features"], k=p["k"], k_range=tuple(p["k_range"]), halflife=p["halflife"],
                warmup=p["warmup"], reservoir_size=p["reservoir_size"], margin=p["margin"], seed=p["seed"],
                n_init=p.get("n_init", 5), reseed_every=p.get("reseed_every", 0))
        s = data["scaler"]
        m.scaler = preprocessing.StandardScaler._from_state(s["counts"], s["means"], s["vars"])
        if data["centres"] is not None:
            km = cluster.KMeans(n_clusters=len(data["centres"]), halflife=p["halflife"], seed=p["seed"])
            km._rng.setstate(_rng_tuple(data["kmeans_rng"]))
            for i, c in enumerate(data["centres"]):
                km.centers[i].update(zip(m.features, c, strict=True))
            m.kmeans = km
        m.ids = list(data["ids"])
        m.next_id = data["next_id"]
        m.buffer = copy.deepcopy(data["buffer"])
        m.recent.extend(copy.deepcopy(data.get("recent", [])))
        m.reservoir = copy.deepcopy(data["reservoir"])
        m.seen = data["seen"]
        m._rng.setstate(_rng_tuple(data["rng"]))
        m._drift_base = {int(k): list(v) for k, v in data["drift_base"].items()}
        m.k_scores = {int(k): float("nan") if v is None else v for k, v in data["k_scores"].items()}
        return m


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_tuple(state: Sequence[Any]) -> tuple[Any, ...]:
    return (state[0], tuple(state[1]), state[2])
