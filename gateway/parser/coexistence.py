"""The WhatsApp Business app on the same number (coexistence): what a person at the business
sent from the app (``smb_message_echoes``), the app's past chats (``history``) and its address
book (``smb_app_state_sync``)."""

from __future__ import annotations

from typing import Any

from gateway.parser.content import content, message_kind
from gateway.parser.identity import ADDRESSEE, contact_index, known, listed, named
from gateway.parser.messages import with_ids
from gateway.parser.parsed import Parsed
from gateway.parser.read import (
    Json,
    as_dict,
    as_dicts,
    as_id,
    as_int,
    as_list,
    as_moment,
    as_str,
    as_time,
    fingerprint,
    meta_errors,
    metadata,
)
from shared.events import stable_id
from shared.phone import digits
from shared.signals import (
    ContactsSynced,
    HistoryChunk,
    HistoryMessage,
    HistoryThread,
    MessageEcho,
    SyncedContact,
)


def echoes(value: Json, waba_id: str | None, _entry: Json, parsed: Parsed) -> None:
    """``message_echoes[]``: one MessageEcho each, to the customer in ``to``/``to_user_id``."""
    field = "smb_message_echoes"
    phone_number_id, display = metadata(value)
    contacts = contact_index(as_list(value.get("contacts")))
    found = with_ids(as_list(value.get("message_echoes")), "echo", field, parsed)
    for position, echo in found:
        wamid = echo["id"]
        kind = message_kind(echo)
        timestamp = as_time(echo.get("timestamp"), parsed.received_at)
        said = content(kind, echo, parsed.received_at)
        parsed.emit(
            field,
            f"echo #{position}",
            MessageEcho,
            event_id=stable_id(MessageEcho.TYPE, wamid),
            occurred_at=timestamp,
            correlation_id=wamid,
            phone_number_id=phone_number_id,
            display_phone_number=display,
            waba_id=waba_id,
            wamid=wamid,
            timestamp=timestamp,
            message_type=kind,
            customer=named(echo, ADDRESSEE, contacts),
            text=said.text,
            media=said.media,
            location=said.location,
            reaction=said.reaction,
            original_message_id=said.original_message_id,
            raw=echo,
        )


def history(value: Json, waba_id: str | None, _entry: Json, parsed: Parsed) -> None:
    """``history[]``: one HistoryChunk each (or its ``errors`` when the business declined)."""
    field = "history"
    phone_number_id, display = metadata(value)
    for position, chunk in enumerate(as_list(value.get("history"))):
        if type(chunk) is not dict:
            parsed.skip(field, f"history #{position} is not an object")
            continue
        progress = as_dict(chunk.get("metadata"))
        phase, order, percent = (
            as_int(progress.get(k)) for k in ("phase", "chunk_order", "progress")
        )
        threads = [_thread(thread, display, parsed) for thread in as_dicts(chunk.get("threads"))]
        errors = meta_errors(chunk.get("errors"))
        if not threads and not errors:
            parsed.skip(field, f"history #{position} has neither threads nor errors")
            continue
        parsed.emit(
            field,
            f"history #{position}",
            HistoryChunk,
            event_id=stable_id(
                HistoryChunk.TYPE,
                phone_number_id,
                fingerprint(chunk, [phase, order, percent, len(threads)]),
            ),
            occurred_at=parsed.received_at,
            phone_number_id=phone_number_id,
            waba_id=waba_id,
            phase=phase,
            chunk_order=order,
            progress=percent,
            threads=threads,
            errors=errors,
        )


def _thread(thread: Json, display: str | None, parsed: Parsed) -> HistoryThread:
    context = as_dict(thread.get("context"))
    customer = listed(context)
    if customer.wa_id is None and as_id(thread.get("id")):
        customer = listed({**context, "wa_id": thread["id"]})
    business = digits(display or "") or None
    messages = []
    for _position, message in with_ids(
        as_list(thread.get("messages")), "message", "history", parsed
    ):
        kind = message_kind(message)
        sender = as_str(message.get("from"))
        messages.append(
            HistoryMessage(
                wamid=message["id"],
                # The business's own messages name the customer they went to.
                from_business=("to" in message or "to_user_id" in message)
                or (business is not None and sender is not None and digits(sender) == business),
                timestamp=as_moment(message.get("timestamp"), parsed.received_at),
                message_type=kind,
                text=content(kind, message, parsed.received_at).text,
                status=as_id(as_dict(message.get("history_context")).get("status")),
            )
        )
    return HistoryThread(customer=customer, messages=messages)


def state_sync(value: Json, waba_id: str | None, _entry: Json, parsed: Parsed) -> None:
    """``state_sync[]`` of type ``contact``: one ContactsSynced for the change."""
    field = "smb_app_state_sync"
    phone_number_id, _display = metadata(value)
    items = as_list(value.get("state_sync"))
    synced = []
    for position, item in enumerate(items):
        found = _synced(item, parsed)
        if isinstance(found, str):
            parsed.skip(field, f"state_sync #{position} {found}")
        else:
            synced.append(found)
    if not synced:
        return
    parsed.emit(
        field,
        field,
        ContactsSynced,
        event_id=stable_id(ContactsSynced.TYPE, phone_number_id, fingerprint(items, [len(synced)])),
        occurred_at=parsed.received_at,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        contacts=synced,
    )


def _synced(item: Any, parsed: Parsed) -> SyncedContact | str:
    """A synchronised contact, or why it is not one."""
    if type(item) is not dict:
        return "is not an object"
    kind = as_str(item.get("type"))
    if kind != "contact":
        return f"of type {kind!r:.60} is not modelled"
    action = as_id(item.get("action"))
    contact = as_dict(item.get("contact"))
    full_name = as_str(contact.get("full_name"))
    person = listed(contact, phone_key="phone_number", name=full_name)
    if action is None or not known(person):
        return "has no action or names nobody"
    return SyncedContact(
        action=action,
        contact=person,
        full_name=full_name,
        first_name=as_str(contact.get("first_name")),
        timestamp=as_moment(as_dict(item.get("metadata")).get("timestamp"), parsed.received_at),
    )
