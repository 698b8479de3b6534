"""The unit the simulator emits: one Kafka record plus the ground truth about it."""

from __future__ import annotations

from typing import Any, NamedTuple


class SimRecord(NamedTuple):
    """One record for a topic, with what the simulator knows about it.

    A NamedTuple because millions are created per run and a tuple is the
    cheapest object with named fields.

    Attributes
    ----------
    topic : str
        Destination topic (``clickstream`` or ``crm-profiles`` by default).
    key : bytes
        Record key: the ``anonymous_id`` for clickstream, the ``record_id`` for CRM.
    value : bytes
        Exact bytes to publish; for malformed records these may be invalid UTF-8.
    truth : dict or None
        Ground truth, ``None`` when unknown (records read back from a file).
        Keys: ``customer_id`` and ``archetype`` always; ``session_id`` for
        clickstream events; ``duplicate_of`` (the event_id) on a publisher-retry
        copy; ``expected_reason`` (a dead-letter reason code) on malformed
        records. The dict may be shared between records: treat it as read-only.

    Examples
    --------
    >>> r = SimRecord("clickstream", b"a1", b'{"type":"page_view"}', None)
    >>> r.topic, r.key
    ('clickstream', b'a1')
    """

    topic: str
    key: bytes
    value: bytes
    truth: dict[str, Any] | None = None

    @property
    def malformed(self) -> bool:
        """Whether the simulator made this record invalid on purpose."""
        return self.truth is not None and "expected_reason" in self.truth

    @property
    def duplicate(self) -> bool:
        """Whether this is a publisher-retry copy of an earlier record."""
        return self.truth is not None and "duplicate_of" in self.truth
