"""WhatsApp webhook payload -> typed events. Pure: no I/O, no clock, no logging.

Every change of every entry is read by the parser of its ``field`` (one dict lookup: the
``messages`` field, the hot path, pays nothing for the others); a field no parser covers is
published as it came, as :class:`shared.events.UnhandledField`. Nothing raises on any JSON
value: an update that cannot make an event (a message without an id) is reported in
``Parsed.skips`` with its field, and what is not a WhatsApp Business Account payload in
``Parsed.ignored``. Event ids are derived with :func:`shared.events.stable_id` from what
identifies the update, so a webhook delivered twice yields the same ids. Values are read by
:mod:`gateway.parser.read`, bounded by the edge's rules (:mod:`gateway.bounds`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from gateway.parser import account, calls, coexistence, customers, templates
from gateway.parser.messages import messages_change, messages_in_steps
from gateway.parser.parsed import NO_FIELD, OTHER_FIELD, FieldParser, Parsed, Skip
from gateway.parser.read import Json, as_id, as_list, as_str, describe, first_line
from shared.events import Event, InboundMessage, MessageStatus, WebhookErrors
from shared.signals import (
    AccountUpdate,
    CallEvent,
    CallStatus,
    ContactsSynced,
    HistoryChunk,
    IdentityChanged,
    MessageEcho,
    PhoneNumberName,
    PhoneNumberQuality,
    PreferenceChanged,
    TemplateCategoryUpdate,
    TemplateComponentsUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
)

__all__ = [
    "FIELDS",
    "NO_FIELD",
    "OTHER_FIELD",
    "Parsed",
    "Skip",
    "field_of",
    "parse_in_steps",
    "parse_webhook",
]

WABA_OBJECT = "whatsapp_business_account"

# Meta's webhook field -> its parser.
FIELDS: dict[str, FieldParser] = {
    "messages": messages_change,
    "smb_message_echoes": coexistence.echoes,
    "history": coexistence.history,
    "smb_app_state_sync": coexistence.state_sync,
    "user_preferences": customers.preferences,
    "user_id_update": customers.user_id_update,
    "calls": calls.calls,
    "account_update": account.account_update,
    "phone_number_quality_update": account.quality_update,
    "phone_number_name_update": account.name_update,
    "message_template_status_update": templates.status_update,
    "message_template_quality_update": templates.quality_update,
    "template_category_update": templates.category_update,
    "message_template_components_update": templates.components_update,
}
# The field each event type comes from (IdentityChanged also from user_id_update: its change).
_SOURCES: dict[str, str] = {
    InboundMessage.TYPE: "messages",
    MessageStatus.TYPE: "messages",
    WebhookErrors.TYPE: "messages",
    IdentityChanged.TYPE: "messages",
    MessageEcho.TYPE: "smb_message_echoes",
    HistoryChunk.TYPE: "history",
    ContactsSynced.TYPE: "smb_app_state_sync",
    PreferenceChanged.TYPE: "user_preferences",
    CallEvent.TYPE: "calls",
    CallStatus.TYPE: "calls",
    AccountUpdate.TYPE: "account_update",
    PhoneNumberQuality.TYPE: "phone_number_quality_update",
    PhoneNumberName.TYPE: "phone_number_name_update",
    TemplateStatusUpdate.TYPE: "message_template_status_update",
    TemplateQualityUpdate.TYPE: "message_template_quality_update",
    TemplateCategoryUpdate.TYPE: "template_category_update",
    TemplateComponentsUpdate.TYPE: "message_template_components_update",
}


def field_of(event: Event) -> str:
    """The webhook field an event was read from, as the skip counter labels it."""
    if type(event) is IdentityChanged and event.change == "user_id_update":
        return "user_id_update"
    return _SOURCES.get(event.type, OTHER_FIELD)


def parse_webhook(payload: Any, *, received_at: datetime) -> Parsed:
    """Every update of one webhook body (already JSON-decoded) as typed events.

    ``received_at`` stands in for a missing or unreadable timestamp.
    """
    parsed = Parsed(received_at)
    for _ in parse_in_steps(payload, parsed, every=sys.maxsize):
        pass
    return parsed


def parse_in_steps(payload: Any, parsed: Parsed, *, every: int) -> Iterator[None]:
    """As :func:`parse_webhook`, into ``parsed``, pausing (a yield) after each change and after
    each ``every`` messages or statuses of one: the gateway publishes the events of a large
    webhook while it reads the rest of it."""
    if type(payload) is not dict:
        parsed.ignored.append(
            Skip(NO_FIELD, f"body is a JSON {type(payload).__name__}, not an object")
        )
        return
    kind = payload.get("object")
    if kind != WABA_OBJECT:
        parsed.ignored.append(Skip(NO_FIELD, f"object {describe(kind)} is not {WABA_OBJECT}"))
        return
    for entry in as_list(payload.get("entry")):
        if type(entry) is not dict:
            parsed.skip(NO_FIELD, "entry is not an object")
            continue
        waba_id = as_id(entry.get("id"))
        for change in as_list(entry.get("changes")):
            if type(change) is not dict:
                parsed.skip(NO_FIELD, "change is not an object")
                continue
            yield from _change(change, waba_id, entry, parsed, every)


def _change(
    change: Json, waba_id: str | None, entry: Json, parsed: Parsed, every: int
) -> Iterator[None]:
    name = as_str(change.get("field")) or ""
    value = change.get("value")
    read = FIELDS.get(name)
    if read is None:
        _unhandled(name, value, waba_id, entry, parsed)
    elif type(value) is not dict:
        parsed.skip(name, f"field {name!r} without a value object")
    else:
        try:
            if read is messages_change:  # the one field whose updates come by the thousand
                yield from messages_in_steps(value, waba_id, parsed, every)
            else:
                read(value, waba_id, entry, parsed)
        except ValueError as error:  # a model refused a value no check foresaw
            parsed.skip(name, f"field {name!r}: {first_line(error)}")
    yield


def _unhandled(name: str, value: Any, waba_id: str | None, entry: Any, parsed: Parsed) -> None:
    if not name:
        parsed.skip(NO_FIELD, "change without a field name")
    elif as_id(name) is None:
        parsed.skip(OTHER_FIELD, f"field name {describe(name)} is too long for one")
    else:
        account.unhandled(name, value, waba_id, entry, parsed)
