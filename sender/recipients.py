"""Who a send command is for: a phone number, or a customer's business-scoped user id.

Since 2026 a WhatsApp user may hide their phone behind a username; Meta then gives the business
only a business-scoped user id (BSUID: an ISO country code, a dot, up to 128 letters and digits,
``AR.13491208655302741918``; a parent one across linked portfolios has ``ENT.`` after the dot,
``AR.ENT.11815799212886844830``). A send to one names it in ``recipient`` instead of ``to``.
"""

from __future__ import annotations

import functools
import re

from shared.phone import InvalidPhone, to_e164

BSUID = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$")

# A pure function of the text, called for every command, mostly with recipients seen before
# (its regular expressions were a visible share of a send's CPU). Errors are not cached.
_to_e164 = functools.lru_cache(maxsize=16_384)(to_e164)


class InvalidRecipient(ValueError):
    pass


def is_bsuid(value: str) -> bool:
    return BSUID.match(value) is not None


def normalise_recipient(raw: str) -> str:
    """A BSUID as it is; E.164, bare digits or ``whatsapp:+...`` to ``+E164``."""
    if is_bsuid(raw):
        return raw
    try:
        return _to_e164(raw)
    except InvalidPhone:
        raise InvalidRecipient(
            f"'to' is not a phone number or a business-scoped user id: {raw!r}"
        ) from None


def normalise_phone(raw: str) -> str:
    try:
        return _to_e164(raw)
    except InvalidPhone:
        raise InvalidRecipient(f"'to_phone' is not a phone number: {raw!r}") from None
