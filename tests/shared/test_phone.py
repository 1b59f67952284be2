from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.phone import InvalidPhone, _parse, digits, maybe_e164, to_e164


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


# Phone-like text: digits (ASCII and not), signs, spaces and letters, in lengths around E.164's.
phone_like = st.one_of(
    st.text(),
    st.text(alphabet="0123456789", min_size=6, max_size=17),
    st.text(alphabet="0123456789+ -()٣²", min_size=6, max_size=17),
    st.from_regex(r"[1-9][0-9]{6,15}", fullmatch=True),
    st.from_regex(r"\+{1,2}[0-9]{6,16}", fullmatch=True),  # the E.164 form, given back
)


def _outcome(convert: Callable[[str], str], raw: str) -> str:
    try:
        return convert(raw)
    except InvalidPhone:
        return "invalid"


@given(phone_like)
def test_meta_form_shortcut_gives_what_the_full_parse_gives(raw: str) -> None:
    assert _outcome(to_e164, raw) == _outcome(_parse, raw)


def test_meta_form_shortcut_edges() -> None:
    for raw in [
        *["12345678", "123456789012345", "1234567", "1234567890123456", "05491135722871"],
        *["+12345678", "+123456789012345", "+1234567", "+1234567890123456", "+0549113572287"],
        *["++5491135722871", "+", "", "+٥٤٩١١٣٥٧٢٢٨٧١"],
    ]:
        assert _outcome(to_e164, raw) == _outcome(_parse, raw), raw
    assert to_e164("5491135722871") == "+5491135722871"
    # Non-ASCII digits are digits to str.isdigit, not to E.164.
    assert _outcome(to_e164, "٥٤٩١١٣٥٧٢٢٨٧١") == _outcome(_parse, "٥٤٩١١٣٥٧٢٢٨٧١")
