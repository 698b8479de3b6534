"""Exceptions of the traffic simulator.

They derive from :class:`app.errors.PersonaError`, so the CLI's generic handling
applies; the ``simulate`` command turns them into one-line messages.
"""

from __future__ import annotations

from app.errors import PersonaError


class SimulatorError(PersonaError):
    """Base of the errors the simulator raises on purpose."""


class JsonlFormatError(SimulatorError):
    """A line of a simulator JSONL file is not a record; the message names the line.

    Examples
    --------
    >>> str(JsonlFormatError("out.jsonl", 3, "not JSON"))
    'out.jsonl, line 3: not JSON'
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}, line {line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class ProduceError(SimulatorError):
    """Records could not be handed to Kafka (unreachable broker, refused record, ...)."""
