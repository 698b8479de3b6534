"""Quality and cost of segmentation against the simulator's archetypes (a benchmark, not a test).

Streams a seeded simulator run (valid clickstream events only, in time order) and

* keeps, per customer, the profile as the stream does (:class:`RealProfile`:
  :func:`app.profiles.unified.apply` per event, the feature vector of
  :func:`app.profiles.unified.feature_vector` read at the last event, as the stream's
  cluster input), or with ``--features standin`` the bench's earlier stand-in
  features (:class:`StandIn`). Customers are keyed by the simulator's true
  ``customer_id`` (identity resolution is benchmarked separately in ``bench/febrl.py``);
* learns the online cluster model (:class:`app.clusters.model.ClusterModel`,
  on :data:`app.clusters.state.CLUSTER_FEATURES` unless ``--all-features``) from
  each customer's vector at the end of each of their sessions (``--learn-on session``,
  the stream's cadence) or at a daily refresh, assigning clusters with hysteresis as it goes;
* runs the default rules (``app/segments/default_rules.toml``) on every event,
  and fires their timers as the stream's clock passes them;

then scores the online clusters of the customers' final vectors against the
archetypes (adjusted Rand index, NMI), side by side with scikit-learn's batch
``KMeans`` and ``MiniBatchKMeans`` fitted on the same final vectors (standardised),
and reports the flap rate (share of membership changes that undo the same
profile's previous change of that segment within 1 hour, and within 24 hours) and the
cost of rule evaluation per event (``timeit``).

Usage::

    .venv/bin/python -m bench.segments_quality [--customers 1000] [--days 30] [--seed 7] [--k 6] [--json OUT]
    .venv/bin/python -m bench.segments_quality --learn-on session --reseed-every 1000   # the stream's configuration
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import platform
import sys
import time
import timeit
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from app.clusters import state as cluster_stage
from app.clusters.model import ClusterModel
from app.events.validation import Event
from app.profiles import features
from app.profiles import unified as profile
from app.segments import evaluate as ev
from app.segments import membership, state
from app.segments.rules import RuleSet, load_rules
from app.simulator.generator import iter_records
from bench.inputs import END, simulator_config

DAY = 86400.0
CLUSTER_FEATURES = [
    "frequency", "monetary", "aov", "views", "searches", "cart_adds", "abandon_rate", "recency_days", "tenure_days",
]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class StandIn:
    """The bench's stand-in profile features of one customer (NOT the profile core's)."""

    __slots__ = (
        "adds",
        "cats",
        "first",
        "last",
        "last_purchase",
        "purchase_times",
        "purchases",
        "revenue",
        "searches",
        "session_id",
        "sessions",
        "views",
    )

    def __init__(self) -> None:
        self.first = self.last = 0.0
        self.last_purchase: float | None = None
        self.purchases = 0
        self.revenue = 0.0
        self.views = self.searches = self.adds = self.sessions = 0
        self.session_id: str | None = None
        self.cats: Counter[str] = Counter()
        self.purchase_times: list[tuple[float, float]] = []  # (ts, revenue) for 90-day RFM

    def update(self, event: dict[str, Any], ts: float, session_id: str) -> None:
        if not self.first:
            self.first = ts
        self.last = max(self.last, ts)
        if session_id != self.session_id:
            self.sessions += 1
            self.session_id = session_id
        kind, props = event["type"], event.get("properties") or {}
        if kind == "product_view":
            self.views += 1
            self.cats[str(props.get("category"))] += 1
        elif kind == "search":
            self.searches += 1
        elif kind == "add_to_cart":
            self.adds += 1
            self.cats[str(props.get("category"))] += 1
        elif kind == "purchase":
            self.purchases += 1
            revenue = float(props.get("revenue") or 0.0)
            self.revenue += revenue
            self.last_purchase = ts
            self.purchase_times.append((ts, revenue))
            for item in props.get("items") or ():
                self.cats[str(item.get("category"))] += 2

    def vector(self, now: float) -> dict[str, float]:
        s = max(self.sessions, 1)
        return {
            "frequency": math.log1p(self.purchases),
            "monetary": math.log1p(self.revenue),
            "aov": self.revenue / self.purchases if self.purchases else 0.0,
            "views": self.views / s,
            "searches": self.searches / s,
            "cart_adds": self.adds / s,
            "abandon_rate": self.adds / (self.purchases + 1),
            "recency_days": (now - self.last) / DAY,
            "tenure_days": (now - self.first) / DAY,
        }

    def rule_features(self, now: float) -> dict[str, Any]:
        recent = [(t, r) for t, r in self.purchase_times if t > now - 90 * DAY]
        total = sum(self.cats.values())
        out: dict[str, Any] = {
            "lifetime.purchases": self.purchases,
            "lifetime.revenue": self.revenue,
            "frequency": len(recent),
            "monetary": sum(r for _, r in recent),
            "first_seen": self.first,
            "last_seen": self.last,
        }
        if self.last_purchase is not None:
            out["last_purchase_at"] = self.last_purchase
        if total >= 5:
            out.update({f"affinity.{c}": n / total for c, n in self.cats.items()})
        return out


class RealProfile:
    """A customer's profile as the stream keeps it: :func:`app.profiles.unified.apply` per event, the real features."""

    __slots__ = ("last", "offset", "session_id", "state", "views")

    def __init__(self) -> None:
        self.state: dict[str, Any] = profile.new_state()
        self.last = 0.0
        self.offset = 0
        self.views = 0
        self.session_id: str | None = None

    def update(self, event: dict[str, Any], ts: float, session_id: str) -> None:
        self.offset += 1
        self.last = max(self.last, ts)
        self.views += event["type"] == "product_view"
        self.session_id = session_id
        e = Event(event, event["type"], event["event_id"], event["anonymous_id"], ts)
        self.state, _ = profile.apply(self.state, e, self.offset)

    def vector(self, now: float) -> dict[str, float]:
        # As the stream's cluster input (app.clusters.state.cluster_input): read at the last event.
        return profile.feature_vector(self.state, self.last)

    def rule_features(self, now: float) -> dict[str, Any]:
        return features.rule_features(self.state, now)


#: Exit reasons that end a profile's membership because of identity or privacy, not a rule.
IDENTITY_REASONS = ("merged_into", "split_into", "erased")


class Flaps:
    """Counts changes, and flaps: changes undoing the same (profile, segment)'s previous change within a window.

    Reported for several windows (1 h: boundary jitter; 24 h: a day's churn). Flaps whose
    undoing change is an identity exit (the profile was absorbed by a merge, split or
    erased: the reason is ``merged_into``, ``split_into`` or ``erased``) are also counted
    apart, with the rate of the others (the rules' own churn).

    >>> f = Flaps()
    >>> f.add([{"profile_id": "p", "segment_id": "vip", "segment_kind": "rule", "change": "entered"}], 0.0)
    >>> f.add([{"profile_id": "p", "segment_id": "vip", "segment_kind": "rule", "change": "exited",
    ...         "reason": {"merged_into": "q"}}], 60.0)
    >>> r = f.report()
    >>> r["flaps_within_1h"], r["identity_flaps_within_1h"], r["rule_flap_rate_within_1h"]
    (1, 1, 0.0)
    """

    def __init__(self, windows_hours: tuple[float, ...] = (1.0, 24.0)) -> None:
        self.windows = windows_hours
        self.last: dict[tuple[str, str], tuple[str, float]] = {}
        self.changes: Counter[str] = Counter()
        self.flaps: dict[float, Counter[str]] = {w: Counter() for w in windows_hours}
        self.identity_flaps: Counter[float] = Counter()

    def add(self, changes: list[dict[str, Any]], now: float) -> None:
        for c in changes:
            key = (c["profile_id"], c["segment_id"])
            group = c["segment_id"].split(":")[0] if c["segment_kind"] == "rule" else "cluster"
            self.changes[group] += 1
            prev = self.last.get(key)
            if prev is not None and prev[0] != c["change"]:
                by_identity = any(r in (c.get("reason") or {}) for r in IDENTITY_REASONS)
                for w in self.windows:
                    if now - prev[1] <= w * 3600:
                        self.flaps[w][group] += 1
                        self.identity_flaps[w] += by_identity
            self.last[key] = (c["change"], now)

    def report(self) -> dict[str, Any]:
        total = sum(self.changes.values())
        out: dict[str, Any] = {"changes": total, "changes_by_segment": dict(self.changes)}
        for w in self.windows:
            flaps = sum(self.flaps[w].values())
            out[f"flaps_within_{w:g}h"] = flaps
            out[f"flap_rate_within_{w:g}h"] = round(flaps / total, 5) if total else 0.0
            out[f"flaps_within_{w:g}h_by_segment"] = dict(self.flaps[w])
            out[f"identity_flaps_within_{w:g}h"] = self.identity_flaps[w]
            rule_flaps = flaps - self.identity_flaps[w]
            out[f"rule_flap_rate_within_{w:g}h"] = round(rule_flaps / total, 5) if total else 0.0
        return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.preprocessing import StandardScaler

    end = args.end
    config = simulator_config(seed=args.seed, customers=args.customers, days=args.days, end=end,
                              malformed_share=0.0, duplicate_share=0.0)
    rules: RuleSet = load_rules()
    real = args.features == "real"
    customers: dict[str, StandIn | RealProfile] = {}
    names = (list(features.vector_names()) if args.all_features else list(cluster_stage.CLUSTER_FEATURES)) \
        if real else CLUSTER_FEATURES
    archetype: dict[str, str] = {}
    seg_state: dict[str, dict[str, Any]] = {}
    timers: list[tuple[float, str]] = []
    due_at: dict[str, float] = {}
    cluster_current: dict[str, int | None] = {}
    cluster_members: dict[str, dict[str, Any]] = {}
    model = ClusterModel(names, k=args.k, warmup=args.warmup, halflife=args.halflife, seed=args.seed,
                         margin=args.margin, reseed_every=args.reseed_every)
    auto = ClusterModel(names, k=None, k_range=(2, 10), warmup=args.warmup, halflife=args.halflife,
                        seed=args.seed, reseed_every=args.reseed_every)
    rule_flaps, cluster_flaps = Flaps(), Flaps()
    events = learned = 0
    rule_time = 0.0

    def evaluate_rules(pid: str, now: float, basis: str) -> None:
        st = seg_state[pid]
        members = membership.segments(st["members"])
        exits: dict[str, ev.Decision] = {}
        feats = customers[pid].rule_features(now)
        decisions, nxt = ev.evaluate_and_schedule(rules, feats, st["windows"], now, members, exits)
        new, changes = membership.diff(pid, st["members"], decisions, now, basis, ("rule",), exits)
        st["members"] = new
        rule_flaps.add(changes, now)
        if nxt is not None and due_at.get(pid) != nxt:
            due_at[pid] = nxt
            heapq.heappush(timers, (nxt, pid))

    def fire_timers(until: float) -> None:
        while timers and timers[0][0] <= until:
            t, pid = heapq.heappop(timers)
            if due_at.get(pid) == t:
                del due_at[pid]
                evaluate_rules(pid, t, f"timer:{t}")

    def update_cluster(pid: str, now: float, learn: bool) -> None:
        nonlocal learned
        x = customers[pid].vector(now)
        if learn:
            model.learn_one(x)
            auto.learn_one(x)
            learned += 1
        d = model.decision(x, cluster_current.get(pid))
        if d is None:
            return
        new, changes = membership.diff(pid, cluster_members.get(pid), {d.segment_id: d}, now, f"s:{now}", ("cluster",))
        cluster_members[pid] = new
        cluster_current[pid] = d.reason["cluster"]
        cluster_flaps.add(changes, now)

    def daily_refresh(now: float) -> None:
        """The profile refresh a timer does once a day (recency and tenure move with the clock)."""
        for pid in sorted(customers):
            update_cluster(pid, now, learn=args.learn_on in ("daily", "both"))

    started = time.perf_counter()
    next_tick = end.timestamp() - args.days * DAY + DAY
    offset = 0
    last_ts = 0.0
    for record in iter_records(config):
        if record.topic != config.topics.clickstream or record.truth is None:
            continue
        event = orjson.loads(record.value)
        ts = _ts(event["timestamp"])
        pid, session_id = record.truth["customer_id"], record.truth["session_id"]
        archetype[pid] = record.truth["archetype"]
        c = customers.get(pid)
        if c is None:
            c = customers[pid] = RealProfile() if real else StandIn()
            seg_state[pid] = state.new_state()
        while ts >= next_tick:
            daily_refresh(next_tick)
            next_tick += DAY
        if c.session_id is not None and session_id != c.session_id:
            update_cluster(pid, ts, learn=args.learn_on in ("session", "both"))
        c.update(event, ts, session_id)
        if not args.no_rules:
            t0 = time.perf_counter()
            fire_timers(ts)
            offset += 1
            seg_state[pid], _ = state.apply_event(seg_state[pid], event["type"], ts, offset)
            evaluate_rules(pid, ts, f"clickstream:0:{offset}")
            rule_time += time.perf_counter() - t0
        events += 1
        last_ts = ts
    for pid in customers:  # the last session of each customer ends with the period
        update_cluster(pid, last_ts, learn=args.learn_on in ("session", "both"))
    fire_timers(end.timestamp())
    stream_seconds = time.perf_counter() - started

    now = end.timestamp()
    pids = sorted(customers)
    truth = [archetype[p] for p in pids]
    finals = [customers[p].vector(now) for p in pids]
    online = [model.predict_one(x) for x in finals]
    online_auto = [auto.predict_one(x) for x in finals]
    matrix = np.array([[x[f] for f in names] for x in finals])
    z = StandardScaler().fit_transform(matrix)
    batch = KMeans(n_clusters=args.k, n_init=10, random_state=args.seed).fit_predict(z)
    minibatch = MiniBatchKMeans(n_clusters=args.k, n_init=10, random_state=args.seed, batch_size=256).fit_predict(z)

    def scores(labels: Any) -> dict[str, float]:
        return {"ari": round(float(adjusted_rand_score(truth, labels)), 4),
                "nmi": round(float(normalized_mutual_info_score(truth, labels)), 4)}

    # Cost of one rule evaluation step (window update + evaluate + diff + next timer) on a typical state.
    sample_pid = max(customers, key=lambda p: customers[p].views)
    st = seg_state[sample_pid]
    feats = customers[sample_pid].rule_features(last_ts)

    def step() -> None:
        w, _ = state.apply_event(st, "product_view", last_ts + 1, 10**12)
        members = membership.segments(st["members"])
        d, _ = ev.evaluate_and_schedule(rules, feats, w["windows"], last_ts + 1, members)
        membership.diff(sample_pid, st["members"], d, last_ts + 1, "b", ("rule",))

    n = 2000
    per_event_us = min(timeit.repeat(step, number=n, repeat=5)) / n * 1e6

    quality = model.quality()
    result = {
        "command": " ".join(["python -m bench.segments_quality", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "config": {"features": args.features, "all_features": args.all_features, "cluster_features": names,
                   "customers": args.customers, "days": args.days, "seed": args.seed,
                   "k": args.k,
                   "warmup": args.warmup, "halflife": args.halflife, "margin": args.margin,
                   "learn_on": args.learn_on, "reseed_every": args.reseed_every},
        "events": events,
        "profiles": len(pids),
        "vectors_learned": learned,
        "archetypes": dict(Counter(truth)),
        "clusters": {
            f"online (River, k={args.k})": scores(online),
            f"online (River, k by silhouette = {len(auto.centres())})": scores(online_auto),
            "batch KMeans (sklearn)": scores(batch),
            "MiniBatchKMeans (sklearn)": scores(minibatch),
        },
        "online_over_batch_ari": round(float(adjusted_rand_score(truth, online)) /
                                       max(float(adjusted_rand_score(truth, batch)), 1e-9), 3),
        "cluster_labels": model.labels(),
        "cluster_quality": {"silhouette": round(quality["silhouette"], 4), "sizes": quality["sizes"]},
        "k_silhouettes_at_warmup": {k: None if v != v else round(v, 4) for k, v in auto.k_scores.items()},
        "rules": rule_flaps.report(),
        "clusters_membership": cluster_flaps.report(),
        "rule_step_us_per_event_timeit": round(per_event_us, 1),
        "rule_seconds_in_stream": round(rule_time, 2),
        "rule_us_per_event_in_stream": round(rule_time / max(events, 1) * 1e6, 1),
        "stream_seconds_total": round(stream_seconds, 1),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", type=lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC), default=END,
                        help="end of the simulated period (runs before #21 used 2024-07-01)")
    parser.add_argument("--k", type=int, default=6, help="clusters (6 archetypes)")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--halflife", type=float, default=0.02)
    parser.add_argument("--margin", type=float, default=0.1, help="cluster assignment hysteresis")
    parser.add_argument("--learn-on", choices=("session", "daily", "both"), default="daily",
                        help="when the cluster model learns a profile's vector: at each session end, at the "
                             "daily profile refresh, or both (assignments are made at both in every case)")
    parser.add_argument("--reseed-every", type=int, default=5000,
                        help="re-seed from the last N vectors learned, every N vectors")
    parser.add_argument("--features", choices=("real", "standin"), default="real",
                        help="real: the profile core's vector (app.profiles.unified, app.profiles.features), read at "
                             "the profile's last event as the stream's cluster input is; standin: the bench's own")
    parser.add_argument("--all-features", action="store_true",
                        help="with --features real: cluster on the whole vector, category affinities and device "
                             "shares included (the stream clusters on app.clusters.state.CLUSTER_FEATURES)")
    parser.add_argument("--no-rules", action="store_true", help="skip the rules (cluster figures only)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
