"""What customers decide about the business: marketing preferences (``user_preferences``) and
their business-scoped user id changing (``user_id_update``)."""

from __future__ import annotations

from gateway.parser.identity import LISTED, contact_index, identity, known, named
from gateway.parser.parsed import Parsed
from gateway.parser.read import (
    Json,
    as_dict,
    as_id,
    as_list,
    as_str,
    as_time,
    metadata,
)
from shared.events import stable_id
from shared.signals import IdentityChanged, PreferenceChanged


def preferences(value: Json, waba_id: str | None, _entry: Json, parsed: Parsed) -> None:
    """``user_preferences[]``: one PreferenceChanged each (stop, resume, signup)."""
    field = "user_preferences"
    phone_number_id, _display = metadata(value)
    contacts = contact_index(as_list(value.get("contacts")))
    for position, item in enumerate(as_list(value.get("user_preferences"))):
        if type(item) is not dict:
            parsed.skip(field, f"preference #{position} is not an object")
            continue
        customer = named(item, LISTED, contacts)
        category = as_id(item.get("category"))
        choice = as_id(item.get("value"))
        if category is None or choice is None or not known(customer):
            parsed.skip(field, f"preference #{position} lacks the customer, category or value")
            continue
        raw_time = as_str(item.get("timestamp")) or ""
        timestamp = as_time(item.get("timestamp"), parsed.received_at)
        parsed.emit(
            field,
            f"preference #{position}",
            PreferenceChanged,
            event_id=stable_id(
                PreferenceChanged.TYPE, phone_number_id, customer.key, category, choice, raw_time
            ),
            occurred_at=timestamp,
            phone_number_id=phone_number_id,
            waba_id=waba_id,
            customer=customer,
            category=category,
            value=choice,
            detail=as_str(item.get("detail")),
            timestamp=timestamp,
        )


def user_id_update(value: Json, waba_id: str | None, _entry: Json, parsed: Parsed) -> None:
    """``user_id_update[]``: a customer's BSUID (and parent BSUID) before and after, as an
    IdentityChanged like the system message ``user_changed_user_id``."""
    field = "user_id_update"
    phone_number_id, _display = metadata(value)
    contacts = contact_index(as_list(value.get("contacts")))
    for position, item in enumerate(as_list(value.get("user_id_update"))):
        if type(item) is not dict:
            parsed.skip(field, f"user_id_update #{position} is not an object")
            continue
        user_ids = as_dict(item.get("user_id"))
        parents = as_dict(item.get("parent_user_id"))
        phone = as_id(item.get("wa_id"))
        before, after = as_id(user_ids.get("previous")), as_id(user_ids.get("current"))
        if before is None or after is None:
            parsed.skip(field, f"user_id_update #{position} lacks the previous or current id")
            continue
        previous = identity(phone, before, as_id(parents.get("previous")), contacts)
        current = previous.model_copy(
            update={"user_id": after, "parent_user_id": as_id(parents.get("current"))}
        )
        raw_time = as_str(item.get("timestamp")) or ""
        timestamp = as_time(item.get("timestamp"), parsed.received_at)
        parsed.emit(
            field,
            f"user_id_update #{position}",
            IdentityChanged,
            event_id=stable_id(IdentityChanged.TYPE, phone_number_id, before, after, raw_time),
            occurred_at=timestamp,
            phone_number_id=phone_number_id,
            waba_id=waba_id,
            change="user_id_update",
            previous=previous,
            current=current,
            body=as_str(item.get("detail")),
            timestamp=timestamp,
        )
