"""The sender's reference in Meta's echoed data: it goes in front and comes off exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.send_ref import MAX_LENGTH, SendRef, tag, untag


@given(
    command_id=st.text(min_size=1, max_size=80),
    attempt=st.integers(min_value=1, max_value=10**6),
    data=st.none() | st.text(max_size=300),
)
def test_tag_then_untag_gives_back_the_ref_and_the_callers_data(
    command_id: str, attempt: int, data: str | None
) -> None:
    value = tag(SendRef(command_id, attempt), data)
    assert value is not None and len(value) <= MAX_LENGTH
    assert untag(value) == (SendRef(command_id, attempt), data or None)


def test_a_ref_that_does_not_fit_leaves_the_callers_data_alone() -> None:
    data = "x" * 500
    assert tag(SendRef("a" * 36, 1), data) == data
    assert tag(SendRef("a" * 36, 1), None) is not None


def test_values_without_a_ref_are_the_callers_data() -> None:
    for value in (None, "", "order-42", "mj1:", "mj1:x:3:abc", "mj1:1:9:abc", "mj1:²:1:a"):
        assert untag(value) == (None, value)
    assert untag("mj1:0:1:a") == (None, "mj1:0:1:a")  # tries count from 1
