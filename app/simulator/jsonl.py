"""Simulator records as JSON Lines, byte-exact, so a run can be stored and replayed.

One record per line: ``{"topic": ..., "key": ..., "value": ...}`` where ``key``
and ``value`` are the record's bytes as text. Bytes that are not valid UTF-8
(malformed records do that on purpose) are written as ``key_b64`` /
``value_b64`` instead, so every record survives the round trip exactly. Ground
truth is not stored here; :class:`~app.simulator.truth.TruthWriter` writes it
beside the file.

Examples
--------
>>> import io
>>> buffer = io.BytesIO()
>>> write_jsonl([SimRecord("clickstream", b"a1", b'{"x":1}'),
...              SimRecord("clickstream", b"a1", b'\\xff{')], buffer)
2
>>> print(buffer.getvalue().decode(), end="")
{"topic":"clickstream","key":"a1","value":"{\\"x\\":1}"}
{"topic":"clickstream","key":"a1","value_b64":"/3s="}
>>> [r.value for r in read_jsonl(io.BytesIO(buffer.getvalue()))]
[b'{"x":1}', b'\\xff{']
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from app.simulator.errors import JsonlFormatError
from app.simulator.record import SimRecord

_BUFFER = 1 << 20


def _encode(record: SimRecord) -> bytes:
    line: dict[str, str] = {"topic": record.topic}
    try:
        line["key"] = record.key.decode("utf-8")
    except UnicodeDecodeError:
        line["key_b64"] = base64.b64encode(record.key).decode("ascii")
    try:
        line["value"] = record.value.decode("utf-8")
    except UnicodeDecodeError:
        line["value_b64"] = base64.b64encode(record.value).decode("ascii")
    return orjson.dumps(line)


def write_jsonl(records: Iterable[SimRecord], path: str | os.PathLike[str] | IO[bytes]) -> int:
    """Write ``records`` to ``path`` (or an open binary file), one JSON object per line.

    Parameters
    ----------
    records : iterable of SimRecord
        Consumed lazily; an exception while iterating leaves the complete lines
        written so far in place.
    path : path-like or binary file
        Created or truncated; a file object is written to and left open.

    Returns
    -------
    int
        Number of records written.
    """
    with contextlib.ExitStack() as stack:
        if isinstance(path, str | os.PathLike):
            out: IO[bytes] = stack.enter_context(open(path, "wb", buffering=_BUFFER))
        else:
            out = path
        count = 0
        write = out.write
        for record in records:
            write(_encode(record) + b"\n")
            count += 1
        out.flush()
        return count


def _text_or_b64(line: dict[str, Any], field: str, where: str, lineno: int) -> bytes:
    text, b64 = line.get(field), line.get(f"{field}_b64")
    if text is not None and b64 is not None:
        raise JsonlFormatError(where, lineno, f'has both "{field}" and "{field}_b64"')
    if text is not None:
        if not isinstance(text, str):
            raise JsonlFormatError(where, lineno, f'"{field}" must be a string')
        return text.encode("utf-8")
    if b64 is not None:
        if not isinstance(b64, str):
            raise JsonlFormatError(where, lineno, f'"{field}_b64" must be a string')
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise JsonlFormatError(where, lineno, f'"{field}_b64" is not valid base64') from None
    raise JsonlFormatError(where, lineno, f'has neither "{field}" nor "{field}_b64"')


def _decode(raw: bytes, where: str, lineno: int) -> SimRecord:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JsonlFormatError(where, lineno, f"not valid JSON ({exc})") from None
    if not isinstance(line, dict):
        raise JsonlFormatError(where, lineno, "is not a JSON object")
    topic = line.get("topic")
    if not isinstance(topic, str) or not topic:
        raise JsonlFormatError(where, lineno, '"topic" must be a non-empty string')
    return SimRecord(topic, _text_or_b64(line, "key", where, lineno),
                     _text_or_b64(line, "value", where, lineno), None)


def read_jsonl(path: str | os.PathLike[str] | IO[bytes]) -> Iterator[SimRecord]:
    """Read records written by :func:`write_jsonl`, lazily; ``truth`` is ``None``.

    Blank lines are skipped.

    Raises
    ------
    JsonlFormatError
        For the first line that is not a record; the message gives the line number.
    OSError
        When the file cannot be opened or read.
    """
    with contextlib.ExitStack() as stack:
        if isinstance(path, str | os.PathLike):
            source: IO[bytes] = stack.enter_context(open(path, "rb", buffering=_BUFFER))
            where = os.fspath(path)
        else:
            source = path
            where = getattr(path, "name", "<stream>")
            where = where if isinstance(where, str) else "<stream>"
        for lineno, raw in enumerate(source, 1):
            if raw.strip():
                yield _decode(raw, where, lineno)
