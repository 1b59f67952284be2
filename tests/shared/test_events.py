"""shared.events.stable_id: the same strings uuid.uuid5 gives (ids already on the bus stay)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.event_base import _NAMESPACE, stable_id


def _uuid5(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def test_known_ids_do_not_change() -> None:
    # Ids published before stable_id stopped calling uuid5: consumers deduplicate on them.
    assert stable_id("whatsapp.message.received", "wamid.HBgN") == (
        "102fe495-0f59-5ee5-8e4e-b5ef8f7ffbf3"
    )
    assert stable_id() == _uuid5()
    assert stable_id("") == _uuid5("")


@given(st.lists(st.text(), max_size=6))
def test_same_as_uuid5_for_any_text(parts: list[str]) -> None:
    # st.text() draws non-ASCII, astral and control characters (\x1f included).
    assert stable_id(*parts) == _uuid5(*parts)


def test_same_as_uuid5_over_many_inputs() -> None:
    # Enough ids that every hex digit appears where the version and variant bits are set.
    for n in range(5000):
        parts = (f"type.{n}", f"wamid.ñandú.{n}", "日本語" * (n % 3), "😀" * (n % 2))
        assert stable_id(*parts) == _uuid5(*parts)


def test_unencodable_text_raises_like_uuid5() -> None:
    with pytest.raises(UnicodeEncodeError):
        _uuid5("\ud800")
    with pytest.raises(UnicodeEncodeError):
        stable_id("\ud800")
