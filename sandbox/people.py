"""The customers the sandbox knows: one person per WhatsApp user, by phone, BSUID or parent BSUID.

A person is keyed by a stable `key`, so the 24 h window, the pair limit, the inbox and the
marketing preference follow the person whichever identifier addresses them, and survive a change
of phone number or of BSUID. Meta regenerates the BSUID when the phone number changes.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass

from sandbox.ids import business_scoped_user_id
from shared.phone import digits, maybe_e164

# ISO country, a dot, up to 128 alphanumerics; a parent BSUID has `ENT.` after the country.
BSUID_PATTERN = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$")


def is_bsuid(text: str) -> bool:
    return BSUID_PATTERN.match(text) is not None


def is_parent_bsuid(text: str) -> bool:
    return is_bsuid(text) and text[3:7] == "ENT."


def parse_identifier(text: str) -> tuple[str, str] | None:
    """`("user_id", "AR.123")` for a BSUID or parent BSUID, `("phone", "+549...")`, or None."""
    if is_bsuid(text):
        return "user_id", text
    phone = maybe_e164(text)
    return ("phone", phone) if phone else None


class IdentityConflict(ValueError):
    """The identifiers given belong to two different people."""


@dataclass(slots=True)
class Person:
    key: str
    user_id: str
    phone: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    name: str = "Usuario"
    # The latest message withheld the phone (a username adopter): webhooks leave it out.
    phone_hidden: bool = False
    marketing_stopped: bool = False
    # Until when a free entry point window (click-to-WhatsApp ad) is open (epoch seconds).
    free_entry_until: float = 0.0
    identity_hash: str = ""

    @property
    def visible_phone(self) -> str | None:
        """The phone as webhooks may show it: digits, or None when unknown or withheld."""
        return digits(self.phone) if self.phone and not self.phone_hidden else None

    @property
    def wamid_owner(self) -> str:
        """What a wamid encodes as its chat: the phone's digits, or the BSUID."""
        return digits(self.phone) if self.phone else self.user_id

    @property
    def label(self) -> str:
        """How logs and answers name the person."""
        return self.phone or self.user_id


class People:
    """Every person, and the indexes from each identifier to them."""

    def __init__(self, waba_id: str, *, parent_bsuids: bool = False) -> None:
        self._waba_id = waba_id
        self._parent_bsuids = parent_bsuids
        self.clear()

    def clear(self) -> None:
        self._serial = itertools.count(1)
        self._by_key: dict[str, Person] = {}
        self._by_phone: dict[str, Person] = {}
        self._by_user_id: dict[str, Person] = {}

    def all(self) -> list[Person]:
        return list(self._by_key.values())

    def by_key(self, key: str) -> Person | None:
        return self._by_key.get(key)

    def find(self, identifier: str) -> Person | None:
        """The person a phone, a BSUID or a parent BSUID belongs to."""
        parsed = parse_identifier(identifier)
        if parsed is None:
            return None
        kind, value = parsed
        return self._by_phone.get(value) if kind == "phone" else self._by_user_id.get(value)

    def get_or_create(self, identifier: str) -> Person:
        """The person addressed by this identifier; an unknown one becomes a new person."""
        person = self.find(identifier)
        if person is not None:
            return person
        parsed = parse_identifier(identifier)
        if parsed is None:
            raise ValueError(f"not a phone number or a business-scoped user id: {identifier!r}")
        kind, value = parsed
        if kind == "phone":
            return self._create(phone=value)
        if is_parent_bsuid(value):
            return self._create(user_id=self._generated_user_id(value), parent_user_id=value)
        return self._create(user_id=value)

    def for_inbound(
        self,
        phone: str | None,
        user_id: str | None,
        parent_user_id: str | None = None,
    ) -> Person:
        """The person writing: known by any identifier given, or a new one; a mismatch raises."""
        found = {
            id(p): p
            for p in (
                self._by_phone.get(phone) if phone else None,
                self._by_user_id.get(user_id) if user_id else None,
                self._by_user_id.get(parent_user_id) if parent_user_id else None,
            )
            if p is not None
        }
        if len(found) > 1:
            raise IdentityConflict("those identifiers belong to different customers")
        person = next(iter(found.values()), None)
        if person is None:
            if phone is None and user_id is None:
                raise ValueError("give 'from' (a phone) or 'user_id' (a BSUID)")
            return self._create(phone=phone, user_id=user_id, parent_user_id=parent_user_id)
        self._check_same(person, phone, user_id, parent_user_id)
        if phone and person.phone is None:
            self._set_phone(person, phone)
        if parent_user_id and person.parent_user_id is None:
            person.parent_user_id = parent_user_id
            self._by_user_id[parent_user_id] = person
        return person

    def change_phone(self, person: Person, new_phone: str) -> str:
        """`user_changed_number`: the new number, and a new BSUID (Meta regenerates it)."""
        if self._by_phone.get(new_phone, person) is not person:
            raise IdentityConflict(f"{new_phone} already belongs to another customer")
        self._set_phone(person, new_phone)
        return self.change_user_id(person, business_scoped_user_id(new_phone, self._waba_id))

    def change_user_id(self, person: Person, new_user_id: str | None = None) -> str:
        """`user_changed_user_id`: the person's new BSUID (generated when not given)."""
        new_user_id = new_user_id or self._generated_user_id(person.user_id + ":next")
        if self._by_user_id.get(new_user_id, person) is not person:
            raise IdentityConflict(f"{new_user_id} already belongs to another customer")
        self._by_user_id.pop(person.user_id, None)
        person.user_id = new_user_id
        self._by_user_id[new_user_id] = person
        return new_user_id

    # -- internals -----------------------------------------------------------------------

    def _create(
        self,
        *,
        phone: str | None = None,
        user_id: str | None = None,
        parent_user_id: str | None = None,
    ) -> Person:
        if user_id is None:
            assert phone is not None
            user_id = business_scoped_user_id(phone, self._waba_id)
        if parent_user_id is None and self._parent_bsuids:
            country, _, rest = user_id.partition(".")
            parent_user_id = f"{country}.ENT.{_number(rest + ':parent')}"
        person = Person(key=f"p{next(self._serial)}", user_id=user_id)
        self._by_key[person.key] = person
        self._by_user_id[user_id] = person
        if parent_user_id:
            person.parent_user_id = parent_user_id
            self._by_user_id[parent_user_id] = person
        if phone:
            self._set_phone(person, phone)
        return person

    def _set_phone(self, person: Person, phone: str) -> None:
        if person.phone:
            self._by_phone.pop(person.phone, None)
        person.phone = phone
        self._by_phone[phone] = person

    def _generated_user_id(self, seed: str) -> str:
        country = seed[:2] if seed[:2].isalpha() and seed[:2].isupper() else "ZZ"
        return f"{country}.{_number(self._waba_id + ':' + seed)}"

    @staticmethod
    def _check_same(
        person: Person, phone: str | None, user_id: str | None, parent_user_id: str | None
    ) -> None:
        if phone and person.phone and phone != person.phone:
            raise IdentityConflict(f"{person.user_id} belongs to {person.phone}, not {phone}")
        if user_id and user_id != person.user_id:
            raise IdentityConflict(
                f"{person.label}'s business-scoped user id is {person.user_id}, not {user_id} "
                "(emit user_changed_user_id to change it)"
            )
        if parent_user_id and person.parent_user_id not in (None, parent_user_id):
            raise IdentityConflict(
                f"{person.label}'s parent user id is {person.parent_user_id}, not {parent_user_id}"
            )


def _number(seed: str) -> int:
    return int(hashlib.sha256(seed.encode()).hexdigest()[:15], 16)
