"""Recent event ids packed in one string (app/events/dedupe.py), and the forms states held before."""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given
from hypothesis import strategies as st

from app.events import dedupe


def legacy_digest(event_id: str) -> str:
    """The 11-character digest states stored (in a list) before the packed string."""
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=8).digest())[:11].decode()


def test_the_packed_string_keeps_the_last_window_ids_at_a_fixed_width() -> None:
    recent: dedupe.Recent = ""
    for i in range(100):
        recent = dedupe.remember(recent, f"e-{i}", window=64)
    assert isinstance(recent, str) and len(recent) == 64 * dedupe.WIDTH
    assert all(dedupe.seen(recent, f"e-{i}") for i in range(36, 100))
    assert not any(dedupe.seen(recent, f"e-{i}") for i in range(36))


def test_a_window_of_one_keeps_only_the_newest_id() -> None:
    assert dedupe.remember(dedupe.remember("", "a", window=1), "b", window=1) == dedupe.digest("b")


def test_a_digest_found_across_two_kept_digests_is_not_a_match() -> None:
    d = dedupe.digest("x")
    straddling = "0" * (dedupe.WIDTH // 2) + d + "1" * (dedupe.WIDTH // 2)
    assert d in straddling and not dedupe.seen(straddling, "x")
    assert dedupe.seen(straddling + d, "x")


def test_the_new_digest_is_the_prefix_of_the_legacy_digest() -> None:
    assert legacy_digest("0f8c7d2e-1b4a-4c9e-9d3f-2a6b8e1c5f70").startswith(
        dedupe.digest("0f8c7d2e-1b4a-4c9e-9d3f-2a6b8e1c5f70"))


def test_a_list_of_legacy_digests_is_read_and_converted_on_the_next_update() -> None:
    old = [legacy_digest(f"e-{i}") for i in range(64)]
    assert dedupe.seen(old, "e-63") and not dedupe.seen(old, "e-64")
    new = dedupe.remember(old, "e-64", window=64)
    assert new == "".join(dedupe.digest(f"e-{i}") for i in range(1, 65))


def test_a_list_of_raw_ids_from_before_digests_is_read_and_converted() -> None:
    old = ["e-1", "0f8c7d2e-1b4a-4c9e-9d3f-2a6b8e1c5f70", "eleven-char"]
    assert all(dedupe.seen(old, i) for i in old)
    assert not dedupe.seen(old, "e-2")
    new = dedupe.remember(old, "e-2", window=64)
    assert all(dedupe.seen(new, i) for i in [*old[:2], "e-2"])  # an 11-character raw id reads as a digest


def test_a_union_keeps_every_id_of_every_form_once_in_order() -> None:
    packed = dedupe.remember(dedupe.remember("", "a", 64), "b", 64)
    union = dedupe.union([legacy_digest("x"), legacy_digest("a")], ["raw"], packed)
    assert list(dedupe.ids(union)) == [dedupe.digest(i) for i in ("x", "a", "raw", "b")]


def test_admit_decided_by_the_caller_keeps_no_ids_in_the_part() -> None:
    part = {"offset": 3, "recent_ids": [legacy_digest("a")]}
    assert dedupe.admit(part, "a", 64, duplicate=False) == (False, {"offset": 3})
    assert dedupe.admit(part, "b", 64, duplicate=True) == (True, {"offset": 3})
    assert dedupe.admit(part, "a", 64) == (True, part)


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=200), st.integers(1, 80))
def test_remember_then_seen_agrees_with_the_last_window_ids(event_ids: list[str], window: int) -> None:
    recent: dedupe.Recent = ""
    for event_id in event_ids:
        recent = dedupe.remember(recent, event_id, window)
    kept = event_ids[-window:]
    assert len(recent) == len(kept) * dedupe.WIDTH
    assert all(dedupe.seen(recent, i) for i in kept)
