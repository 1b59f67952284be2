"""Who a webhook is about: a customer's phone, business-scoped user ids, name and username.

A number-level change names people in two places: the item itself (``from``,
``recipient_id``, ``to_user_id``, ...) and the change's ``contacts[]`` (``{profile{name?,
username?}, wa_id?, user_id, parent_user_id?}``), which carries the names. The phone is absent
for customers who hide it behind a username: never assumed.
"""

from __future__ import annotations

from typing import Any

from gateway.parser.read import Json, as_dict, as_id, as_str
from shared.events import Identity
from shared.phone import maybe_e164

ContactIndex = tuple[dict[str, Json], Json | None]


def contact_index(contacts: list[Any]) -> ContactIndex:
    """Contacts by wa_id and user_id, and the only contact when there is exactly one."""
    index: dict[str, Json] = {}
    for contact in contacts:
        if type(contact) is not dict:
            continue
        for key in ("wa_id", "user_id"):
            value = as_str(contact.get(key))
            if value:
                index[key + ":" + value] = contact
    only = contacts[0] if len(contacts) == 1 and type(contacts[0]) is dict else None
    return index, only


def _compatible(contact: Json, phone: str | None, user_id: str | None) -> bool:
    contact_phone = as_str(contact.get("wa_id"))
    contact_user = as_str(contact.get("user_id"))
    if phone and contact_phone and contact_phone != phone:
        return False
    return not (user_id and contact_user and contact_user != user_id)


def identity(
    phone: str | None,
    user_id: str | None,
    parent_user_id: str | None,
    contacts: ContactIndex,
) -> Identity:
    """The person an item names, completed from the change's matching contact."""
    index, only = contacts
    contact = None
    if phone:
        contact = index.get("wa_id:" + phone)
    if contact is None and user_id:
        contact = index.get("user_id:" + user_id)
    if contact is None:
        # The change's only contact, unless it names somebody else.
        contact = only if only is not None and _compatible(only, phone, user_id) else {}
    wa_id = phone or as_id(contact.get("wa_id"))
    profile = as_dict(contact.get("profile"))
    return Identity(
        phone=maybe_e164(wa_id),
        wa_id=wa_id,
        user_id=user_id or as_id(contact.get("user_id")),
        parent_user_id=parent_user_id or as_id(contact.get("parent_user_id")),
        name=as_str(profile.get("name")),
        username=as_id(profile.get("username")),
    )


# Where an item names a person: its keys for the phone, the BSUID and the parent BSUID.
Keys = tuple[str, str, str]
SENDER: Keys = ("from", "from_user_id", "from_parent_user_id")
RECIPIENT: Keys = ("recipient_id", "recipient_user_id", "recipient_parent_user_id")
ADDRESSEE: Keys = ("to", "to_user_id", "to_parent_user_id")
LISTED: Keys = ("wa_id", "user_id", "parent_user_id")


def named(item: Json, keys: Keys, contacts: ContactIndex) -> Identity:
    """The person an item names at ``keys``, completed from the change's contacts."""
    phone, user_id, parent_user_id = keys
    return identity(
        as_id(item.get(phone)),
        as_id(item.get(user_id)),
        as_id(item.get(parent_user_id)),
        contacts,
    )


def listed(item: Json, *, phone_key: str = "wa_id", name: str | None = None) -> Identity:
    """A person an object describes by itself (a synchronised contact, a history thread):
    ``<phone_key>``, ``user_id``, ``parent_user_id`` and ``username``."""
    wa_id = as_id(item.get(phone_key))
    return Identity(
        phone=maybe_e164(wa_id),
        wa_id=wa_id,
        user_id=as_id(item.get("user_id")),
        parent_user_id=as_id(item.get("parent_user_id")),
        name=name,
        username=as_id(item.get("username")),
    )


def known(person: Identity) -> bool:
    """Whether an identity names anybody (a phone or a business-scoped user id)."""
    return bool(person.wa_id or person.user_id or person.parent_user_id)
