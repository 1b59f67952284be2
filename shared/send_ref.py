"""Which send a status webhook is about, through Meta's ``biz_opaque_callback_data``.

Meta echoes a message's ``biz_opaque_callback_data`` in every status webhook of that message.
The sender puts its command id and try number in front of the caller's own data, and the
gateway takes them off again, so a status whose wamid the sender never learnt (the answer was
lost: a timeout, a dropped connection, a crash) is still filed under the right message and try,
and a second send of one command is told from its first.

Format: ``mj1:<attempt>:<length of the command id>:<command id><the caller's data>``. The length
makes it unambiguous whatever characters the command id holds.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "mj1:"
MAX_LENGTH = 512  # Meta's limit for biz_opaque_callback_data


@dataclass(frozen=True, slots=True)
class SendRef:
    command_id: str
    attempt: int  # the sender's try of the command, 1 first


def tag(ref: SendRef, data: str | None) -> str | None:
    """The value to send: the reference, then ``data``; ``data`` alone when both don't fit."""
    value = f"{PREFIX}{ref.attempt}:{len(ref.command_id)}:{ref.command_id}{data or ''}"
    return value if len(value) <= MAX_LENGTH else data


def untag(value: str | None) -> tuple[SendRef | None, str | None]:
    """The reference (None when the value carries none) and the caller's data."""
    if value is None or not value.startswith(PREFIX):
        return None, value
    parts = value[len(PREFIX) :].split(":", 2)
    if len(parts) != 3 or not all(_is_number(p) for p in parts[:2]):
        return None, value
    attempt, length, rest = int(parts[0]), int(parts[1]), parts[2]
    if attempt < 1 or length < 1 or length > len(rest):
        return None, value
    return SendRef(rest[:length], attempt), rest[length:] or None


def _is_number(text: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    return 0 < len(text) <= 9 and text.isascii() and text.isdigit()
