from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.phone import InvalidPhone, digits, maybe_e164, to_e164


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+5491135722871", "+5491135722871"),
        ("5491135722871", "+5491135722871"),
        ("whatsapp:+5491135722871", "+5491135722871"),
        ("WhatsApp: +54 9 11 3572-2871", "+5491135722871"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("0054 9 11 3572 2871", "+5491135722871"),
    ],
)
def test_accepted_forms(raw: str, expected: str) -> None:
    assert to_e164(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "hola", "011 4321 5678", "+12", "+1234567890123456", "54911abc", "++549111"]
)
def test_rejected_forms(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        to_e164(raw)
    assert maybe_e164(raw) is None


@given(st.from_regex(r"[1-9][0-9]{7,14}", fullmatch=True))
def test_digits_round_trip(number: str) -> None:
    assert digits(to_e164(number)) == number
