"""Phone numbers: everything Meta, Twilio and people write, to E.164 with ``+``."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d+")


class InvalidPhone(ValueError):
    pass


def to_e164(raw: str) -> str:
    """``whatsapp:+54 9 11 3572-2871``, ``5491135722871``, ``+549...`` -> ``+5491135722871``.

    Raises :class:`InvalidPhone` for anything that is not 8 to 15 digits (E.164's range).
    """
    # Meta's own form (``wa_id``), on every webhook, and the E.164 form this gives, on every
    # event published: what _parse gives, without its regex passes.
    digits = raw[1:] if raw[:1] == "+" else raw
    if 8 <= len(digits) <= 15 and digits.isascii() and digits.isdigit() and digits[0] != "0":
        return "+" + digits
    return _parse(raw)


def _parse(raw: str) -> str:
    text = raw.strip()
    if text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:") :]
    text = text.strip()
    if text.startswith("00"):
        text = text[2:]
    digits = "".join(_DIGITS.findall(text))
    leftovers = re.sub(r"[\d\s+().-]", "", text)
    # E.164 country codes never start with 0.
    bad_shape = not 8 <= len(digits) <= 15 or digits.startswith("0") or text.count("+") > 1
    if leftovers or bad_shape:
        raise InvalidPhone(f"not a phone number: {raw!r}")
    return "+" + digits


def maybe_e164(raw: str | None) -> str | None:
    """Like :func:`to_e164`, but None for missing or unreadable input."""
    if not raw:
        return None
    try:
        return to_e164(raw)
    except InvalidPhone:
        return None


def digits(e164: str) -> str:
    """``+5491135722871`` -> ``5491135722871`` (the form Meta uses in ``wa_id``)."""
    return e164.lstrip("+")
