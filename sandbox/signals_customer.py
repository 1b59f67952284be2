"""Webhooks about one customer, built in Meta's shapes for `POST /_sandbox/webhooks/emit`.

Fields `smb_message_echoes`, `history`, `smb_app_state_sync`, `user_preferences`, `calls` and
`user_id_update`, and under `messages` the system messages (`user_changed_number`,
`user_changed_user_id`, `customer_identity_changed`). Each names the customer by `customer`
(a phone or a BSUID) and keeps what the signal changes: a stopped marketing preference, the
customer's new phone or BSUID, what the business app sent to the phone.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.payloads import contact, envelope, user_ids
from sandbox.people import IdentityConflict, Person
from sandbox.phones import InboundError, person_at
from sandbox.state import SandboxState
from shared.phone import digits, maybe_e164

Built = tuple[dict[str, Any], dict[str, Any]]  # (the webhook payload, extras for the answer)


class CustomerSignal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    type: str | None = None
    # The customer: a phone (+549...) or a business-scoped user id (AR.123...).
    customer: str = Field(min_length=1)


def _person(state: SandboxState, signal: CustomerSignal) -> Person:
    return person_at(state, signal.customer)


def _stamp(state: SandboxState) -> str:
    return str(int(state.clock()))


# --- coexistence: the WhatsApp Business app on the same number ----------------------------


class EchoSignal(CustomerSignal):
    text: str | None = None
    # Any other message the app sent: {"type": "image", "image": {...}}.
    message: dict[str, Any] | None = None
    revoke: str | None = None  # the wamid of the message deleted
    edit: str | None = None  # the wamid of the message edited (to `text`)


def smb_message_echo(state: SandboxState, signal: EchoSignal) -> Built:
    """A person at the business wrote to the customer from the WhatsApp Business app."""
    person = _person(state, signal)
    content: dict[str, Any]
    if signal.revoke is not None:
        content = {"type": "revoke", "revoke": {"original_message_id": signal.revoke}}
    elif signal.edit is not None:
        text = {"type": "text", "text": {"body": signal.text or ""}}
        content = {"type": "edit", "edit": {"original_message_id": signal.edit, "message": text}}
    elif signal.message is not None:
        content = {"type": "unknown", **signal.message}
    else:
        body = signal.text or "Hola, te escribo desde la app del negocio."
        content = {"type": "text", "text": {"body": body}}
    wamid = state.ids.wamid(person.wamid_owner, outbound=True)
    echo: dict[str, Any] = {"from": state.config.display_digits}
    if person.visible_phone:
        echo["to"] = person.visible_phone
    echo.update(user_ids(person, "to_"))
    echo.update(id=wamid, timestamp=_stamp(state), **content)
    # The customer's phone receives what the app sent (it does not open or extend the window).
    record = {"wamid": wamid, "type": content["type"], "time": state.clock(), "body": content}
    state.inbox(person).append({**record, "context_id": None, "source": "business_app"})
    value = {"contacts": [contact(person)], "message_echoes": [echo]}
    return envelope(state.config, "smb_message_echoes", **value), {"wamid": wamid}


class HistoryLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: Literal["customer", "business"] = Field(default="customer", alias="from")
    text: str
    status: str = "READ"


class HistorySignal(CustomerSignal):
    messages: list[HistoryLine] = Field(
        default_factory=lambda: [
            HistoryLine.model_validate({"from": "customer", "text": "Hola, ¿tienen turnos?"}),
            HistoryLine.model_validate({"from": "business", "text": "Sí, mañana a las 10."}),
        ]
    )
    phase: int = Field(default=0, ge=0, le=2)
    chunk_order: int = Field(default=1, ge=1)
    progress: int = Field(default=100, ge=0, le=100)
    declined: bool = False


def history(state: SandboxState, signal: HistorySignal) -> Built:
    """The chat history of the business app, synchronised once at onboarding."""
    if signal.declined:
        text = "History sync is turned off by the business from the WhatsApp Business App"
        error = {
            "code": 2593109,
            "title": text,
            "message": text,
            "error_data": {"details": "History sharing is turned off by the business"},
        }
        return envelope(state.config, "history", history=[{"errors": [error]}]), {}
    person = _person(state, signal)
    messages = [_history_message(state, person, line) for line in signal.messages]
    thread: dict[str, Any] = {}
    if person.visible_phone:
        thread["id"] = person.visible_phone
    thread["context"] = contact(person, name=False)
    if person.username:
        thread["context"]["username"] = person.username
    thread["context"].pop("profile", None)
    thread["messages"] = messages
    metadata = {
        "phase": signal.phase,
        "chunk_order": signal.chunk_order,
        "progress": signal.progress,
    }
    chunk = {"metadata": metadata, "threads": [thread]}
    return envelope(state.config, "history", history=[chunk]), {}


def _history_message(state: SandboxState, person: Person, line: HistoryLine) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if line.sender == "business":
        message["from"] = state.config.display_digits
        if person.visible_phone:
            message["to"] = person.visible_phone
    else:
        if person.visible_phone:
            message["from"] = person.visible_phone
        message.update(user_ids(person, "from_"))
    message.update(
        id=state.ids.wamid(person.wamid_owner, outbound=line.sender == "business"),
        timestamp=_stamp(state),
        type="text",
        text={"body": line.text},
        history_context={"status": line.status},
    )
    return message


class StateSyncSignal(CustomerSignal):
    action: Literal["add", "remove"] = "add"
    full_name: str | None = None
    first_name: str | None = None


def smb_app_state_sync(state: SandboxState, signal: StateSyncSignal) -> Built:
    """A contact added to (or removed from) the business app's address book."""
    person = _person(state, signal)
    entry: dict[str, Any] = {}
    if signal.action == "add":
        full_name = signal.full_name or person.name
        entry["full_name"] = full_name
        entry["first_name"] = signal.first_name or full_name.split(" ")[0]
    if person.visible_phone:
        entry["phone_number"] = person.visible_phone
    entry.update(user_ids(person, ""))
    if person.username:
        entry["username"] = person.username
    item = {
        "type": "contact",
        "contact": entry,
        "action": signal.action,
        "metadata": {"timestamp": _stamp(state)},
    }
    return envelope(state.config, "smb_app_state_sync", state_sync=[item]), {}


# --- marketing preferences ----------------------------------------------------------------


_PREFERENCE_DETAILS = {
    "stop": "User requested to stop marketing messages",
    "resume": "User requested to resume marketing messages",
    "signup": "User signed up via signup link",
}


class PreferenceSignal(CustomerSignal):
    value: Literal["stop", "resume", "signup"] = "stop"
    detail: str | None = None


def user_preferences(state: SandboxState, signal: PreferenceSignal) -> Built:
    """The customer stopped (or resumed, or signed up for) marketing messages: from now on a
    marketing template to them answers 131050, until resume or signup."""
    person = _person(state, signal)
    person.marketing_stopped = signal.value == "stop"
    item: dict[str, Any] = {}
    if person.visible_phone:
        item["wa_id"] = person.visible_phone
    item.update(user_ids(person, ""))
    item.update(
        detail=signal.detail or _PREFERENCE_DETAILS[signal.value],
        category="marketing_messages",
        value=signal.value,
    )
    if signal.value == "signup":
        item["signup_id"] = str(state.ids.media_id())
    item["timestamp"] = int(state.clock())
    value = {"contacts": [contact(person)], "user_preferences": [item]}
    return envelope(state.config, "user_preferences", **value), {}


# --- identity changes ---------------------------------------------------------------------


class NumberChangeSignal(CustomerSignal):
    new_phone: str = Field(min_length=1)


class UserIdChangeSignal(CustomerSignal):
    new_user_id: str | None = None


def _system_message(
    state: SandboxState, old: Person, system: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = dict(extra)
    message.update(
        id=state.ids.wamid(old.wamid_owner, outbound=False),
        timestamp=_stamp(state),
        type="system",
        system=system,
    )
    return message


def _moved(person: Person, change: Callable[[], str]) -> tuple[Person, str]:
    """A copy of the person before the change (for `from`), and the new identifier."""
    before = dataclasses.replace(person)
    try:
        return before, change()
    except IdentityConflict as exc:
        raise InboundError(str(exc)) from None


def user_changed_number(state: SandboxState, signal: NumberChangeSignal) -> Built:
    """The customer changed phone number: Meta gives the new number and a new BSUID. The
    sandbox moves the person to both, so later sends and the window follow."""
    person = _person(state, signal)
    new_phone = maybe_e164(signal.new_phone)
    if new_phone is None:
        raise InboundError(f"new_phone is not a phone number: {signal.new_phone!r}")
    before, new_user_id = _moved(person, lambda: state.people.change_phone(person, new_phone))
    person.phone_hidden = False
    system: dict[str, Any] = {
        "body": f"User {person.name} changed from {digits(before.label)} to {digits(new_phone)}",
        "wa_id": digits(new_phone),
        **user_ids(person, ""),
        "type": "user_changed_number",
    }
    extra = {"from": digits(before.phone)} if before.phone else {}
    extra.update(user_ids(before, "from_"))
    message = _system_message(state, before, system, extra)
    answer = {"wamid": message["id"], "user_id": new_user_id, "phone": new_phone}
    return envelope(state.config, messages=[message]), answer


def user_changed_user_id(state: SandboxState, signal: UserIdChangeSignal) -> Built:
    """The customer's BSUID changed; Meta's notification carries no phone number."""
    person = _person(state, signal)
    before, new_user_id = _moved(
        person, lambda: state.people.change_user_id(person, signal.new_user_id)
    )
    system = {
        "body": f"User {person.name} changed from {before.user_id} to {new_user_id}",
        **user_ids(person, ""),
        "type": "user_changed_user_id",
    }
    message = _system_message(state, before, system, user_ids(before, "from_"))
    return envelope(state.config, messages=[message]), {
        "wamid": message["id"],
        "user_id": new_user_id,
    }


def user_id_update(state: SandboxState, signal: UserIdChangeSignal) -> Built:
    """The `user_id_update` field (Meta's BSUID page): previous and current BSUID."""
    person = _person(state, signal)
    before, new_user_id = _moved(
        person, lambda: state.people.change_user_id(person, signal.new_user_id)
    )
    item: dict[str, Any] = {}
    if person.visible_phone:
        item["wa_id"] = person.visible_phone
    item["detail"] = f"User id for {person.name} has been updated."
    item["user_id"] = {"previous": before.user_id, "current": new_user_id}
    if person.parent_user_id:
        item["parent_user_id"] = {
            "previous": person.parent_user_id,
            "current": person.parent_user_id,
        }
    item["timestamp"] = _stamp(state)
    value = {"contacts": [contact(person, username=False)], "user_id_update": [item]}
    value["contacts"][0].pop("user_id", None)
    value["contacts"][0].pop("parent_user_id", None)
    return envelope(state.config, "user_id_update", **value), {"user_id": new_user_id}


def customer_identity_changed(state: SandboxState, signal: CustomerSignal) -> Built:
    """The customer's identity key changed (a new device); the identifiers stay."""
    person = _person(state, signal)
    seed = f"{person.user_id}:{person.identity_hash}:{state.clock()}"
    person.identity_hash = hashlib.sha256(seed.encode()).hexdigest()[:12]
    extra: dict[str, Any] = {"from": person.visible_phone} if person.visible_phone else {}
    extra.update(user_ids(person, "from_"))
    extra["identity"] = {
        "acknowledged": True,
        "created_timestamp": _stamp(state),
        "hash": person.identity_hash,
    }
    system = {"body": "User identity changed", "type": "customer_identity_changed"}
    message = _system_message(state, person, system, extra)
    payload = envelope(state.config, contacts=[contact(person)], messages=[message])
    return payload, {"wamid": message["id"]}
