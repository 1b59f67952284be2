"""Calling webhooks: `calls` (connect, terminate, and call statuses as `statuses[]` with
`type: "call"`), and the customer's `call_permission_reply` (an interactive message).

Shapes from Meta's Calling reference as the business-scoped user ids page restates them:
a user-initiated call names the customer in `from`/`from_user_id`, a business-initiated one
in `to`/`to_user_id`; the phone is left out when the customer hides it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sandbox.payloads import contact, envelope, user_ids
from sandbox.people import Person
from sandbox.phones import InboundRequest, person_at, prepare
from sandbox.signals_customer import Built, CustomerSignal
from sandbox.state import SandboxState

SDP_OFFER = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=sandbox\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
)


class CallSignal(CustomerSignal):
    event: Literal["connect", "terminate", "status"] = "connect"
    direction: Literal["USER_INITIATED", "BUSINESS_INITIATED"] = "USER_INITIATED"
    # The call: a new one on connect, the customer's latest one otherwise, unless given.
    call_id: str | None = None
    # terminate: COMPLETED | FAILED; status: RINGING | ACCEPTED | REJECTED.
    status: str | None = None
    duration: int = Field(default=60, ge=0)
    biz_opaque_callback_data: str | None = None


def calls(state: SandboxState, signal: CallSignal) -> Built:
    person = person_at(state, signal.customer)
    call_id = signal.call_id or state.calls.get(person.key)
    if call_id is None or (signal.event == "connect" and signal.call_id is None):
        call_id = state.ids.call_id()
    state.calls[person.key] = call_id
    user_initiated = signal.direction == "USER_INITIATED"
    # Business-initiated calls name only the username of the customer (Meta's page).
    contacts = [contact(person, name=user_initiated)]
    if signal.event == "status":
        return envelope(state.config, "calls", statuses=[_status(state, signal, person, call_id)],
                        contacts=contacts), {"call_id": call_id}  # fmt: skip
    call = _call(state, signal, person, call_id)
    return envelope(state.config, "calls", contacts=contacts, calls=[call]), {"call_id": call_id}


def _call(state: SandboxState, signal: CallSignal, person: Person, call_id: str) -> dict[str, Any]:
    now = int(state.clock())
    business = state.config.display_digits
    call: dict[str, Any] = {"id": call_id}
    if signal.direction == "USER_INITIATED":
        if person.visible_phone:
            call["from"] = person.visible_phone
        call.update(user_ids(person, "from_"))
        call["to"] = business
    else:
        call["from"] = business
        if person.visible_phone:
            call["to"] = person.visible_phone
        call.update(user_ids(person, "to_"))
    call.update(event=signal.event, timestamp=str(now), direction=signal.direction)
    if signal.event == "connect":
        sdp_type = "offer" if signal.direction == "USER_INITIATED" else "answer"
        call["session"] = {"sdp_type": sdp_type, "sdp": SDP_OFFER}
    else:
        call["status"] = signal.status or "COMPLETED"
        call["start_time"] = str(now - signal.duration)
        call["end_time"] = str(now)
        call["duration"] = signal.duration
    if signal.biz_opaque_callback_data is not None:
        call["biz_opaque_callback_data"] = signal.biz_opaque_callback_data
    return call


def _status(
    state: SandboxState, signal: CallSignal, person: Person, call_id: str
) -> dict[str, Any]:
    """A business-initiated call's status: `statuses[]` with `type: "call"`."""
    item: dict[str, Any] = {
        "id": call_id,
        "timestamp": str(int(state.clock())),
        "type": "call",
        "status": signal.status or "RINGING",
    }
    if person.visible_phone:
        item["recipient_id"] = person.visible_phone
    item.update(user_ids(person, "recipient_"))
    if signal.biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = signal.biz_opaque_callback_data
    return item


class PermissionReplySignal(CustomerSignal):
    response: Literal["accept", "reject"] = "accept"
    response_source: Literal["user_action", "automatic"] = "user_action"
    # The business's call_permission_request message the customer answers (a wamid).
    context_id: str | None = None
    # How long an accepted permission lasts (Meta: 7 days).
    valid_seconds: int = Field(default=7 * 24 * 3600, ge=1)


def call_permission_reply(state: SandboxState, signal: PermissionReplySignal) -> Built:
    """The customer answers a call permission request: an interactive `messages` webhook."""
    person = person_at(state, signal.customer)
    reply: dict[str, Any] = {"response": signal.response}
    if signal.response == "accept":
        reply["expiration_timestamp"] = int(state.clock()) + signal.valid_seconds
    reply["response_source"] = signal.response_source
    interactive = {"type": "call_permission_reply", "call_permission_reply": reply}
    identity: dict[str, Any] = {"name": person.name, "username": person.username}
    if person.phone and not person.phone_hidden:
        identity["from"] = person.phone
    else:
        identity["user_id"] = person.user_id
    request = InboundRequest.model_validate(
        {
            **identity,
            "context_id": signal.context_id,
            "message": {"type": "interactive", "interactive": interactive},
        }
    )
    payload, _, wamid = prepare(state, request)
    return payload, {"wamid": wamid}
