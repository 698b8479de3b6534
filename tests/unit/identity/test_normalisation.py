"""Normalisers: canonical forms, idempotence, case/whitespace invariance, no crash on any text."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from app.identity.normalise import (
    normalise_date,
    normalise_email,
    normalise_id,
    normalise_loyalty_id,
    normalise_name,
    normalise_phone,
    normalise_postcode,
    normalise_street,
)
from app.identity.phonetic import soundex

TEXT_NORMALISERS = [
    normalise_name,
    normalise_street,
    normalise_email,
    normalise_date,
    normalise_postcode,
    normalise_loyalty_id,
    normalise_id,
]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_normalisers_never_raise_and_are_idempotent(text: str) -> None:
    for normalise in TEXT_NORMALISERS:
        once = normalise(text)
        assert once is None or isinstance(once, str)
        if once is not None:
            assert normalise(once) == once, normalise.__name__


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["GB", "AU", "US"]))
def test_phone_normaliser_never_raises_and_is_idempotent(text: str, region: str) -> None:
    once = normalise_phone(text, region)
    if once is not None:
        assert once.startswith("+")
        assert normalise_phone(once, region) == once


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.ascii_letters + " .'-", min_size=1, max_size=30))
def test_names_ignore_case_and_surrounding_whitespace(name: str) -> None:
    assert normalise_name(name) == normalise_name(f"  {name.upper()}\t")
    assert normalise_name(name) == normalise_name(name.swapcase())


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z0-9]{1,12}@[a-z0-9]{1,10}\.(com|org|net)", fullmatch=True))
def test_emails_ignore_case_and_whitespace(email: str) -> None:
    assert normalise_email(email) == normalise_email(f"  {email.upper()} ")
    assert normalise_email(email) == email


@given(st.text(max_size=20))
def test_soundex_is_total(text: str) -> None:
    code = soundex(normalise_name(text) or "")
    assert code == "" or (len(code) == 4 and code[0].isalpha())


def test_gmail_dots_and_plus_tags_are_ignored_only_where_safe() -> None:
    assert normalise_email("Ann.Lee+promo@googlemail.com") == "annlee@gmail.com"
    assert normalise_email("annlee@gmail.com") == "annlee@gmail.com"
    assert normalise_email("ann.lee+x@outlook.com") == "ann.lee@outlook.com"
    # unknown providers keep dots and tags: they may be distinct mailboxes
    assert normalise_email("ann.lee+x@example.com") == "ann.lee+x@example.com"
    assert normalise_email("ann@@example.com") is None
    assert normalise_email("no-at-sign.example.com") is None


def test_phones_become_e164_in_the_default_region() -> None:
    assert normalise_phone("07911 123456", "GB") == "+447911123456"
    assert normalise_phone("+44 (0)7911-123456", "AU") == "+447911123456"
    assert normalise_phone("0412 345 678", "AU") == "+61412345678"
    assert normalise_phone("0412 345 678", "GB") is None
    assert normalise_phone("0000000000", "GB") is None


def test_names_drop_accents_and_punctuation() -> None:
    assert normalise_name("ZOË O'Brien-Smith") == "zoe obrien smith"
    assert normalise_name("José") == normalise_name("jose")
    assert normalise_name("...") is None


def test_dates_accept_common_iso_forms_and_reject_impossible_ones() -> None:
    assert normalise_date("19560409") == "1956-04-09"
    assert normalise_date("1956/04/09") == "1956-04-09"
    assert normalise_date("1956-04-31") is None
    assert normalise_date("09/04/1956") is None  # ambiguous day/month order: not guessed


def test_postcodes_and_streets() -> None:
    assert normalise_postcode(" sw1a-1aa ") == "SW1A1AA"
    assert normalise_street("12 High St.") == "12 high street"
