"""Output records of identity resolution (schema ``identity-changes.v1``).

One builder per kind of change. Every record is keyed by its ``profile_id``:

``merged``
    ``profile_id`` survived, ``absorbed_profile_ids`` were merged into it;
    ``evidence`` says why (``rule: deterministic`` with the identifier type and
    hash; ``rule: probabilistic`` with field, similarity ``score`` and ``weight``,
    plus one item ``field: match_weight`` with the total weight).
``possible_match``
    the observation's profile ``profile_id`` and the candidate in
    ``absorbed_profile_ids`` (the profile that *would* be absorbed) scored between
    the review and merge thresholds; nothing was merged.
``refused``
    a link was not made; the reason is the first evidence item's ``rule``:
    ``refused:limit:<type>``, ``refused:blocklisted``, ``refused:shared_device``
    or ``refused:contradicted``, followed by the evidence that was set aside.
    ``absorbed_profile_ids`` holds the profile that would have been merged, if any.
``split``
    ``profile_id`` was recomputed after evidence was withdrawn; ``new_profile_ids``
    are the resulting profiles (the old id among them when it kept a part).

Examples
--------
>>> c = change("merged", "p-1", "2024-01-01T00:00:00Z", "crm/crm/r1", absorbed=["p-2"],
...            evidence=[{"rule": "deterministic", "identifier_type": "email",
...                       "identifier_hash": "0" * 32}])
>>> sorted(c)
['absorbed_profile_ids', 'at', 'change', 'change_id', 'evidence', 'profile_id', 'schema_version']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.identity.hashing import change_id_for

CHANGE_KINDS = ("merged", "split", "possible_match", "refused")


def change(
    kind: str,
    profile_id: str,
    at: str,
    basis: str,
    *,
    absorbed: Sequence[str] | None = None,
    new: Sequence[str] | None = None,
    evidence: Sequence[dict[str, Any]] | None = None,
    seq: int = 0,
) -> dict[str, Any]:
    """One ``identity-changes`` record; its ``change_id`` comes from ``basis`` and ``seq``."""
    if kind not in CHANGE_KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    record: dict[str, Any] = {
        "schema_version": 1,
        "change_id": change_id_for(basis, kind, profile_id, str(seq)),
        "change": kind,
        "profile_id": profile_id,
        "at": at,
    }
    if absorbed is not None:
        record["absorbed_profile_ids"] = list(absorbed)
    if new is not None:
        record["new_profile_ids"] = list(new)
    if evidence is not None:
        record["evidence"] = list(evidence)
    return record
