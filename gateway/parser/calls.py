"""Field ``calls`` (the Calling API): calls connecting and ending (``calls[]``), and the
progress of the business's calls (``statuses[]`` with ``type: "call"``, never message
statuses)."""

from __future__ import annotations

from gateway.parser.identity import ADDRESSEE, RECIPIENT, SENDER, ContactIndex, contact_index, named
from gateway.parser.messages import with_ids
from gateway.parser.parsed import Parsed
from gateway.parser.read import (
    Json,
    as_id,
    as_int,
    as_list,
    as_moment,
    as_object,
    as_str,
    as_time,
    metadata,
)
from shared.events import stable_id
from shared.signals import CallEvent, CallStatus

FIELD = "calls"


def calls(value: Json, _waba_id: str | None, _entry: Json, parsed: Parsed) -> None:
    phone_number_id, _display = metadata(value)
    contacts = contact_index(as_list(value.get("contacts")))
    for position, call in with_ids(as_list(value.get("calls")), "call", FIELD, parsed):
        _call(position, call, phone_number_id, contacts, parsed)
    for position, status in with_ids(as_list(value.get("statuses")), "call status", FIELD, parsed):
        _call_status(position, status, phone_number_id, contacts, parsed)


def _call(
    position: int, call: Json, phone_number_id: str, contacts: ContactIndex, parsed: Parsed
) -> None:
    event = as_id(call.get("event"))
    if event is None:
        parsed.skip(FIELD, f"call #{position} has no event")
        return
    direction = as_id(call.get("direction"))
    # A business-initiated call names the customer in to/to_user_id, the others in from.
    customer = named(call, ADDRESSEE if direction == "BUSINESS_INITIATED" else SENDER, contacts)
    now = parsed.received_at
    timestamp = as_time(call.get("timestamp"), now)
    parsed.emit(
        FIELD,
        f"call #{position}",
        CallEvent,
        event_id=stable_id(CallEvent.TYPE, call["id"], event, as_str(call.get("timestamp")) or ""),
        occurred_at=timestamp,
        correlation_id=call["id"],
        phone_number_id=phone_number_id,
        call_id=call["id"],
        event=event,
        direction=direction,
        customer=customer,
        timestamp=timestamp,
        session=as_object(call.get("session")),
        status=as_id(call.get("status")),
        started_at=as_moment(call.get("start_time"), now),
        ended_at=as_moment(call.get("end_time"), now),
        duration_seconds=as_int(call.get("duration")),
        biz_opaque_callback_data=as_str(call.get("biz_opaque_callback_data")),
    )


def _call_status(
    position: int, status: Json, phone_number_id: str, contacts: ContactIndex, parsed: Parsed
) -> None:
    name = as_id(status.get("status"))
    if status.get("type", "call") != "call" or name is None:
        parsed.skip(FIELD, f"call status #{position} is not a call's status")
        return
    timestamp = as_time(status.get("timestamp"), parsed.received_at)
    raw_time = as_str(status.get("timestamp")) or ""
    parsed.emit(
        FIELD,
        f"call status #{position}",
        CallStatus,
        event_id=stable_id(CallStatus.TYPE, status["id"], name, raw_time),
        occurred_at=timestamp,
        correlation_id=status["id"],
        phone_number_id=phone_number_id,
        call_id=status["id"],
        status=name,
        customer=named(status, RECIPIENT, contacts),
        timestamp=timestamp,
        biz_opaque_callback_data=as_str(status.get("biz_opaque_callback_data")),
    )
