"""The identifiers Meta hands out: wamids, media ids, trace ids, business-scoped user ids."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import string

from shared.phone import digits

_TRACE_ALPHABET = string.ascii_letters + string.digits + "_-"

# Calling code -> ISO country, for business-scoped user ids like "AR.1234...".
_COUNTRIES = {
    "1": "US",
    "7": "RU",
    "33": "FR",
    "34": "ES",
    "39": "IT",
    "44": "GB",
    "49": "DE",
    "51": "PE",
    "52": "MX",
    "53": "CU",
    "54": "AR",
    "55": "BR",
    "56": "CL",
    "57": "CO",
    "58": "VE",
    "91": "IN",
    "351": "PT",
    "502": "GT",
    "506": "CR",
    "507": "PA",
    "591": "BO",
    "593": "EC",
    "595": "PY",
    "598": "UY",
}


def country_of(phone: str) -> str:
    """The ISO country of a +E164 number, `ZZ` when unknown."""
    number = digits(phone)
    for size in (3, 2, 1):
        country = _COUNTRIES.get(number[:size])
        if country:
            return country
    return "ZZ"


def business_scoped_user_id(phone: str, waba_id: str) -> str:
    """A stable business-scoped user id (`AR.<digits>`) for a phone and a business account."""
    digest = hashlib.sha256(f"{waba_id}:{digits(phone)}".encode()).hexdigest()
    return f"{country_of(phone)}.{int(digest[:15], 16)}"


class IdFactory:
    """Unique ids, reproducible for a given seed."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._counter = itertools.count(1)

    def wamid(self, phone_digits: str, *, outbound: bool) -> str:
        """A wamid shaped like Meta's: base64 of a record holding the phone and a message key."""
        serial = next(self._counter)
        key = f"{self._rng.getrandbits(40):010X}{serial:08X}"
        if not outbound:
            key = "3A" + key
        record = (
            b"\x1c\x18"
            + bytes([len(phone_digits)])
            + phone_digits.encode()
            + b"\x15\x02\x00"
            + (b"\x11" if outbound else b"\x12")
            + b"\x18"
            + bytes([len(key)])
            + key.encode()
            + b"\x00"
        )
        return "wamid." + base64.b64encode(record).decode()

    def call_id(self) -> str:
        """A call id shaped like Meta's: `wacid.` and base64."""
        key = f"{self._rng.getrandbits(64):016X}{next(self._counter):08X}"
        return "wacid." + base64.urlsafe_b64encode(b"\x15\x02\x00" + key.encode()).decode()

    def media_id(self) -> str:
        """A numeric media id, like Meta's."""
        return f"{next(self._counter) + 1000}{self._rng.randrange(10**11):011d}"

    def fbtrace_id(self) -> str:
        return "".join(self._rng.choice(_TRACE_ALPHABET) for _ in range(23))

    def hex_id(self, size: int = 32) -> str:
        return f"{self._rng.getrandbits(size * 4):0{size}x}"
