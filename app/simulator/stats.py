"""Counts of what a run sent or wrote, and its one-line summary.

Examples
--------
>>> stats = ProduceStats()
>>> for r in [SimRecord("clickstream", b"a", b"{}", {"customer_id": "c", "archetype": "x"}),
...           SimRecord("clickstream", b"a", b"{", {"expected_reason": "invalid_json"}),
...           SimRecord("crm-profiles", b"r", b"{}", None)]:
...     stats.count(r)
>>> stats.total, stats.produced, stats.malformed, stats.duplicates
(3, {'clickstream': 2, 'crm-profiles': 1}, 1, 0)
>>> stats.elapsed = 2.0
>>> stats.summary("wrote")
'wrote 3 records (clickstream 2, crm-profiles 1; malformed 1, duplicates 0) in 2.0 s, 2 records/s'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.simulator.record import SimRecord


@dataclass
class ProduceStats:
    """What was sent (or written).

    Attributes
    ----------
    produced : dict of str to int
        Records per topic.
    malformed, duplicates : int
        Deliberately invalid records and publisher-retry copies among them
        (known only for generated records, not for replayed files).
    elapsed : float
        Seconds from the first record to the last acknowledgement.
    stopped : bool
        Whether the run was stopped (signal, ``--duration``) before the records ran out.
    """

    produced: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    duplicates: int = 0
    elapsed: float = 0.0
    stopped: bool = False

    @property
    def total(self) -> int:
        return sum(self.produced.values())

    @property
    def rate(self) -> float:
        """Records per second over the whole run (0 when nothing was timed)."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def count(self, record: SimRecord) -> None:
        """Add one record to the counts."""
        self.produced[record.topic] = self.produced.get(record.topic, 0) + 1
        truth = record.truth
        if truth is not None:
            if "expected_reason" in truth:
                self.malformed += 1
            elif "duplicate_of" in truth:
                self.duplicates += 1

    def summary(self, verb: str, known_truth: bool = True) -> str:
        """One line such as ``produced 1,000 records (clickstream 990, ...) in 2.0 s, 500 records/s``."""
        topics = ", ".join(f"{topic} {n:,}" for topic, n in sorted(self.produced.items()))
        details = topics or "none"
        if known_truth:
            details += f"; malformed {self.malformed:,}, duplicates {self.duplicates:,}"
        line = (f"{verb} {self.total:,} records ({details}) in {self.elapsed:.1f} s, "
                f"{self.rate:,.0f} records/s")
        return line + (" (stopped early)" if self.stopped else "")
