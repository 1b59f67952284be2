"""Field ``messages``: customers' messages, statuses of the business's messages, and errors.

Every ``messages[]``, ``statuses[]`` and value-level ``errors[]`` item becomes its own event.
The hot path of the gateway: a plain message or status costs what it did before the other
fields were parsed (the system messages about identities are told apart by one comparison).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from gateway.bounds import MAX_ID_BYTES
from gateway.parser.content import KNOWN_TYPES, content
from gateway.parser.identity import (
    ContactIndex,
    contact_index,
    identity,
    known,
)
from gateway.parser.parsed import Parsed
from gateway.parser.read import (
    Json,
    as_bool,
    as_dict,
    as_id,
    as_list,
    as_str,
    as_text,
    as_time,
    fingerprint,
    first_line,
    meta_errors,
    metadata,
)
from shared.events import (
    Event,
    InboundMessage,
    MessageContext,
    MessageStatus,
    WebhookErrors,
    stable_id,
)
from shared.phone import maybe_e164
from shared.send_ref import untag
from shared.signals import IdentityChanged

FIELD = "messages"
# System messages that say a customer's identifiers changed: IdentityChanged, never a message
# (a conversation must not read them as the customer's text).
IDENTITY_CHANGES = frozenset(
    {"user_changed_number", "user_changed_user_id", "customer_identity_changed"}
)


def with_ids(items: list[Any], what: str, field: str, parsed: Parsed) -> Iterator[tuple[int, Json]]:
    """The items that are objects with an id (made a string), with their position; the others
    are reported as skipped."""
    for position, item in enumerate(items):
        if type(item) is not dict or not as_text(item.get("id")):
            parsed.skip(field, f"{what} #{position} has no id")
            continue
        if not as_id(item["id"]):
            parsed.skip(field, f"{what} #{position}: id longer than {MAX_ID_BYTES} bytes")
            continue
        if type(item["id"]) is not str:
            item = {**item, "id": str(item["id"])}
        yield position, item


def messages_change(value: Json, waba_id: str | None, _entry: Json, parsed: Parsed) -> None:
    for _ in messages_in_steps(value, waba_id, parsed, every=sys.maxsize):
        pass


def messages_in_steps(
    value: Json, waba_id: str | None, parsed: Parsed, every: int
) -> Iterator[None]:
    """The change's events into ``parsed``, pausing (a yield) after each ``every`` items."""
    phone_number_id, display = metadata(value)
    contacts = contact_index(as_list(value.get("contacts")))
    events = parsed.events
    received_at = parsed.received_at
    countdown = every
    for position, message in with_ids(as_list(value.get("messages")), "message", FIELD, parsed):
        try:
            events.append(
                _message(
                    message,
                    phone_number_id=phone_number_id,
                    display_phone_number=display,
                    waba_id=waba_id,
                    contacts=contacts,
                    received_at=received_at,
                )
            )
        except ValueError as error:  # a value no model accepts (pydantic's ValidationError)
            parsed.skip(FIELD, f"message #{position}: {first_line(error)}")
        countdown -= 1
        if not countdown:
            countdown = every
            yield
    for position, status in with_ids(as_list(value.get("statuses")), "status", FIELD, parsed):
        try:
            events.append(
                _status(
                    status,
                    phone_number_id=phone_number_id,
                    contacts=contacts,
                    received_at=received_at,
                )
            )
        except ValueError as error:
            parsed.skip(FIELD, f"status #{position}: {first_line(error)}")
        countdown -= 1
        if not countdown:
            countdown = every
            yield
    raw_errors = as_list(value.get("errors"))
    if raw_errors:
        _value_errors(raw_errors, waba_id, phone_number_id, parsed)


def _message(
    message: Json,
    *,
    phone_number_id: str,
    display_phone_number: str | None,
    waba_id: str | None,
    contacts: ContactIndex,
    received_at: datetime,
) -> Event:
    wamid = message["id"]
    meta_type = as_str(message.get("type")) or ""  # message_kind(), inline on the hot path
    kind = meta_type if meta_type in KNOWN_TYPES else "unsupported"
    timestamp = as_time(message.get("timestamp"), received_at)
    if kind == "system":
        change = as_dict(message.get("system")).get("type")
        if type(change) is str and change in IDENTITY_CHANGES:
            return identity_changed(message, change, phone_number_id, waba_id, contacts, timestamp)
    found = content(kind, message, received_at)
    raw_context = message.get("context")
    referral = message.get("referral")
    return InboundMessage(
        event_id=stable_id(InboundMessage.TYPE, wamid),
        occurred_at=timestamp,
        correlation_id=wamid,
        phone_number_id=phone_number_id,
        display_phone_number=display_phone_number,
        waba_id=waba_id,
        wamid=wamid,
        timestamp=timestamp,
        message_type=kind,
        sender=identity(  # named(message, SENDER, contacts), inline on the hot path
            as_id(message.get("from")),
            as_id(message.get("from_user_id")),
            as_id(message.get("from_parent_user_id")),
            contacts,
        ),
        text=found.text,
        media=found.media,
        location=found.location,
        reply=found.reply,
        reaction=found.reaction,
        call_permission=found.call_permission,
        contacts=found.contacts,
        order=found.order,
        system=found.system,
        original_message_id=found.original_message_id,
        context=_context(raw_context) if raw_context else None,
        referral=referral if type(referral) is dict else None,
        errors=meta_errors(message.get("errors")),
        raw=message,
    )


def _context(value: Any) -> MessageContext | None:
    if type(value) is not dict:
        return None
    product = value.get("referred_product")
    return MessageContext(
        message_id=as_str(value.get("id")),
        from_phone=maybe_e164(as_str(value.get("from"))),
        forwarded=as_bool(value.get("forwarded")),
        frequently_forwarded=as_bool(value.get("frequently_forwarded")),
        referred_product=product if type(product) is dict else None,
    )


def identity_changed(
    message: Json,
    change: str,
    phone_number_id: str,
    waba_id: str | None,
    contacts: ContactIndex,
    timestamp: datetime,
) -> IdentityChanged:
    """A system message about the sender's identifiers: who they were, and who they are now.

    ``user_changed_number`` carries the new phone and BSUID in ``system``; ``user_changed_user_id``
    only the new BSUID (the phone, when known, stays); ``customer_identity_changed`` keeps every
    identifier. The previous BSUID is ``system.previous_user_id`` (Meta, August 2026) or the
    sender's ``from_user_id``.
    """
    system = as_dict(message.get("system"))
    previous = identity(
        as_id(message.get("from")),
        as_id(system.get("previous_user_id")) or as_id(message.get("from_user_id")),
        as_id(system.get("previous_parent_user_id")) or as_id(message.get("from_parent_user_id")),
        contacts,
    )
    current = previous
    if change != "customer_identity_changed":
        new_phone = as_id(system.get("wa_id")) if change == "user_changed_number" else None
        wa_id = new_phone or (previous.wa_id if change == "user_changed_user_id" else None)
        current = previous.model_copy(
            update={
                "phone": maybe_e164(wa_id),
                "wa_id": wa_id,
                "user_id": as_id(system.get("user_id")),
                "parent_user_id": as_id(system.get("parent_user_id")),
            }
        )
    if not known(previous) or not known(current):
        raise ValueError(f"{change} does not name the customer before and after")
    wamid = message["id"]
    return IdentityChanged(
        event_id=stable_id(IdentityChanged.TYPE, wamid),
        occurred_at=timestamp,
        correlation_id=wamid,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        change=change,  # one of IDENTITY_CHANGES (pydantic checks the literal)
        previous=previous,
        current=current,
        body=as_str(system.get("body")),
        wamid=wamid,
        timestamp=timestamp,
    )


def _status(
    status: Json,
    *,
    phone_number_id: str,
    contacts: ContactIndex,
    received_at: datetime,
) -> MessageStatus:
    wamid = status["id"]
    name = as_str(status.get("status")) or "unknown"
    raw_timestamp = as_str(status.get("timestamp")) or ""
    recipient = identity(  # named(status, RECIPIENT, contacts), inline on the hot path
        as_id(status.get("recipient_id")),
        as_id(status.get("recipient_user_id")),
        as_id(status.get("recipient_parent_user_id")),
        contacts,
    )
    timestamp = as_time(status.get("timestamp"), received_at)
    pricing = status.get("pricing")
    conversation = status.get("conversation")
    recipient_key = recipient.wa_id or recipient.user_id or ""
    ref, data = untag(as_str(status.get("biz_opaque_callback_data")))
    return MessageStatus(
        # sent, delivered and read of one message differ; a redelivered webhook repeats all four.
        event_id=stable_id(MessageStatus.TYPE, wamid, name, raw_timestamp, recipient_key),
        occurred_at=timestamp,
        correlation_id=wamid,
        phone_number_id=phone_number_id,
        wamid=wamid,
        status=name,
        timestamp=timestamp,
        recipient=recipient,
        errors=meta_errors(status.get("errors")),
        pricing=pricing if type(pricing) is dict else None,
        conversation=conversation if type(conversation) is dict else None,
        biz_opaque_callback_data=data,
        command_id=ref.command_id if ref is not None else None,
        send_attempt=ref.attempt if ref is not None else None,
        raw=status,
    )


def _value_errors(
    raw_errors: list[Any], waba_id: str | None, phone_number_id: str, parsed: Parsed
) -> None:
    errors = meta_errors(raw_errors)
    if not errors:
        parsed.skip(FIELD, "errors[] without a readable error")
        return
    found = fingerprint(raw_errors, [error.model_dump() for error in errors])
    parsed.events.append(
        WebhookErrors(
            event_id=stable_id(WebhookErrors.TYPE, waba_id or "", phone_number_id, found),
            occurred_at=parsed.received_at,
            phone_number_id=phone_number_id or None,
            errors=errors,
        )
    )
