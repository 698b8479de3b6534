"""Batch linking of a JSONL file of ``crm-profiles`` records through the streaming resolver.

This is the code path of ``persona link`` and of the FEBRL benchmark: records
are resolved one at a time, in file order, with no second pass; the final
assignment reads each record's profile from the state at the end (so absorbed
profiles are already resolved to their survivor). Bad lines are reported with
their line number and skipped.

Examples
--------
>>> from app.identity.resolver import IdentityResolver
>>> head = '{"schema_version": 1, "record_id": '
>>> lines = [head + '"1", "source": "crm", "traits": {"email": "a@example.com"}}',
...          'not json',
...          head + '"2", "source": "pos", "traits": {"email": "A@example.com "}}']
>>> report = link_lines(lines, IdentityResolver("a-secret-of-16-chars"))
>>> [rid for rid, _ in report.assignments], report.assignments[0][1] == report.assignments[1][1]
(['1', '2'], True)
>>> report.errors[0][0], report.errors[0][1].startswith("not valid JSON")
(2, True)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.identity.observation import InvalidRecordError, Observation
from app.identity.resolver import IdentityResolver
from app.identity.state import IdentityState

Validator = Callable[[Any], None]


@dataclass
class LinkReport:
    """Outcome of :func:`link_lines`.

    Attributes
    ----------
    assignments
        ``(record_id, profile_id)`` per good line, in file order.
    errors
        ``(line number, message)`` per skipped line.
    changes
        Count of emitted identity changes by kind.
    change_records
        The identity-change records themselves (when asked for).
    """

    assignments: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    changes: Counter[str] = field(default_factory=Counter)
    change_records: list[dict[str, Any]] = field(default_factory=list)


def parse_line(line: str | bytes, validate: Validator | None = None) -> Mapping[str, Any]:
    """Decode one JSONL line into a record; raises :class:`InvalidRecordError` with the reason."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecordError(f"not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise InvalidRecordError("expected a JSON object")
    if validate is not None:
        validate(record)
    return record


def iter_observed(
    lines: Iterable[str | bytes],
    observe: Callable[[Mapping[str, Any]], Observation],
    validate: Validator | None,
    errors: list[tuple[int, str]],
) -> Iterator[tuple[str, Observation]]:
    """Parse and observe lazily: yield ``(record_id, observation)`` of good lines.

    Bad lines are appended to ``errors`` as ``(line number, message)`` and skipped;
    blank lines are ignored. The one parse-and-observe loop behind
    :func:`read_observations`, :func:`link_lines` and
    :func:`app.identity.estimate.observe_lines`.

    Examples
    --------
    >>> errors: list = []
    >>> good = list(iter_observed(['{"record_id": 1}', "", "[1]"], lambda r: r["record_id"], None, errors))
    >>> good, errors
    ([('1', 1)], [(3, 'expected a JSON object')])
    """
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = parse_line(line, validate)
            obs = observe(record)
        except InvalidRecordError as exc:
            errors.append((number, str(exc)))
            continue
        yield str(record["record_id"]), obs


def read_observations(
    lines: Iterable[str | bytes],
    resolver: IdentityResolver,
    validate: Validator | None = None,
) -> tuple[list[tuple[str, Observation]], list[tuple[int, str]]]:
    """Parse and observe: ``(record_id, observation)`` of good lines, ``(line, error)`` of bad."""
    errors: list[tuple[int, str]] = []
    return list(iter_observed(lines, resolver.observe_crm, validate, errors)), errors


def link_observations(
    observed: Iterable[tuple[str, Observation]],
    resolver: IdentityResolver,
    state: IdentityState | None = None,
    at: str | None = None,
    keep_changes: bool = False,
) -> LinkReport:
    """Resolve observations one at a time, in order, then read each record's final profile."""
    state = state if state is not None else IdentityState.in_memory()
    report = LinkReport()
    keys: list[tuple[str, str]] = []
    for record_id, obs in observed:
        result = resolver.resolve(state, obs, at)
        for c in result.changes:
            report.changes[c["change"]] += 1
        if keep_changes:
            report.change_records.extend(result.changes)
        if obs.key is not None:
            keys.append((record_id, obs.key))
    for record_id, key in keys:
        profile = resolver.profile_of(state, key)
        if profile is not None:
            report.assignments.append((record_id, profile))
    return report


def link_lines(
    lines: Iterable[str | bytes],
    resolver: IdentityResolver,
    state: IdentityState | None = None,
    validate: Validator | None = None,
    at: str | None = None,
    keep_changes: bool = False,
) -> LinkReport:
    """Resolve every record of ``lines`` in order and report each record's final profile.

    Parameters
    ----------
    lines
        JSONL text, one ``crm-profiles`` record a line; blank lines are ignored.
    resolver
        The resolver (weights and policy).
    state
        State to resolve against (fresh in-memory state by default).
    validate
        Optional schema check raising :class:`InvalidRecordError`.
    at
        Time of changes for records without ``updated_at``.
    keep_changes
        Keep the identity-change records in :attr:`LinkReport.change_records`.
    """
    errors: list[tuple[int, str]] = []
    observed = iter_observed(lines, resolver.observe_crm, validate, errors)
    report = link_observations(observed, resolver, state, at, keep_changes)
    report.errors = errors
    return report
