"""The list of every segment, rule and cluster, with its label and size (``GET /v1/segments``).

Rule segments come from the rule set (a ``for_each`` rule's segments, such as
``interest:toys``, exist once some profile entered one); cluster segments from the
model's catalogue (:func:`app.clusters.state.catalogue`, served in Redis as
``persona:clusters``); sizes are the cardinalities of the segments' Redis sets.

>>> from app.segments.rules import load_rules
>>> rules = load_rules({"rules": {
...     "vip": {"when": "lifetime.revenue > 500", "description": "Spent over 500."},
...     "interest": {"for_each": "affinity.*", "segment": "interest:{key}", "when": "affinity.{key} >= 0.3",
...                  "description": "Strong interest in a category."}}})
>>> rows = listing(rules, {"cluster-0": {"kind": "cluster", "label": "frequent", "cluster": 0}},
...                {"vip": 3, "interest:toys": 2, "cluster-0": 5})
>>> [(r["segment_id"], r["kind"], r["size"], r["label"]) for r in rows]
[('cluster-0', 'cluster', 5, 'frequent'), ('interest:toys', 'rule', 2, 'Strong interest in a category.'), \
('vip', 'rule', 3, 'Spent over 500.')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.segments.rules import Rule


def rule_of(rules: Iterable[Rule], segment_id: str) -> Rule | None:
    """The rule that produces ``segment_id`` (its segment, or its ``for_each`` template)."""
    for rule in rules:
        if rule.for_each is None and rule.segment == segment_id:
            return rule
        if rule.for_each is not None:
            prefix, _, suffix = rule.segment.partition("{key}")
            if segment_id.startswith(prefix) and segment_id.endswith(suffix) and len(segment_id) > len(prefix + suffix):
                return rule
    return None


def listing(
    rules: Iterable[Rule], clusters: Mapping[str, Mapping[str, Any]], sizes: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Every segment: fixed rule segments, ``for_each`` segments that have sizes, and the clusters.

    Each row is ``{"segment_id", "kind", "label", "size"}`` (plus ``cluster`` for clusters),
    sorted by segment id; a segment without a set has size 0. A set whose segment is
    neither a rule's nor a current cluster's (a retired cluster) is listed as ``kind: "retired"``.
    """
    rules = list(rules)
    rows: dict[str, dict[str, Any]] = {}
    for rule in rules:
        if rule.for_each is None:
            rows[rule.segment] = {"segment_id": rule.segment, "kind": "rule", "label": rule.description or rule.name}
    for seg, info in clusters.items():
        rows[seg] = {"segment_id": seg, "kind": "cluster", "label": info.get("label"), "cluster": info.get("cluster")}
    for seg in sizes:
        if seg not in rows:
            owner = rule_of(rules, seg)
            rows[seg] = ({"segment_id": seg, "kind": "rule", "label": owner.description or owner.name} if owner
                         else {"segment_id": seg, "kind": "retired", "label": None})
    return [{**row, "size": int(sizes.get(seg, 0))} for seg, row in sorted(rows.items())]
