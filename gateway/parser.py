"""WhatsApp webhook payload -> typed events. Pure: no I/O, no clock, no logging.

Every ``entry[]``, ``changes[]``, ``messages[]``, ``statuses[]`` and value-level ``errors[]``
becomes its own event. Input is whatever JSON Meta (or anybody who knows the secret) sent, so
nothing is assumed about types: a field of the wrong type reads as absent, and an update that
cannot make an event at all (a message without an id) is reported in ``Parsed.skipped`` instead
of raising. Event ids are derived with :func:`shared.events.stable_id` from what identifies the
update, so a webhook delivered twice yields the same ids.

Values are bounded by :mod:`gateway.bounds` (the edge's rules): an id longer than an id can be
reads as absent (a message or status without a usable id is skipped), an error code outside an
int4 reads as 0, a time outside Meta's clock reads as the arrival time. NULs are replaced
before the body is decoded (``gateway.handlers``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.bounds import MAX_ID_BYTES, error_code, id_fits
from shared.events import (
    Event,
    Identity,
    InboundMessage,
    Location,
    Media,
    MessageContext,
    MessageStatus,
    MetaError,
    Reaction,
    Reply,
    TemplateStatusUpdate,
    WebhookErrors,
    stable_id,
)
from shared.phone import maybe_e164
from shared.send_ref import untag

WABA_OBJECT = "whatsapp_business_account"
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
KNOWN_TYPES = MEDIA_TYPES | {
    "text",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "edit",
    "revoke",
    "request_welcome",
    "unsupported",
}
HANDLED_FIELDS = frozenset({"messages", "message_template_status_update"})
# Meta's clock: no WhatsApp message is older than WhatsApp (2009), none from more than a day
# ahead of our own clock. Other times would break a consumer's date arithmetic (year 1 shown in
# a UTC-3 zone is year 0).
EARLIEST_SECONDS = datetime(2009, 1, 1, tzinfo=UTC).timestamp()
CLOCK_SLACK = timedelta(days=1)

Json = dict[str, Any]


@dataclass
class Parsed:
    """What one webhook body held."""

    events: list[Event] = field(default_factory=list)
    # Signed but not for us (another object, a field we do not subscribe to): logged, 200.
    ignored: list[str] = field(default_factory=list)
    # Updates too broken to become an event (no message id): logged and counted, 200.
    skipped: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- tolerant readers


def _dict(value: Any) -> Json:
    return value if type(value) is dict else {}


def _list(value: Any) -> list[Any]:
    return value if type(value) is list else []


def _str(value: Any) -> str | None:
    """A string field; Meta sometimes sends ids as numbers, so those read as strings too."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    return None


def _text(value: Any) -> str | None:
    """Like :func:`_str` but an empty string reads as absent."""
    text = _str(value)
    return text or None


def _id(value: Any) -> str | None:
    """Like :func:`_str`, but what is too long for an id reads as absent."""
    text = _str(value)
    return text if text is None or id_fits(text) else None


def _float(value: Any) -> float | None:
    """A finite number ("nan" and "inf" are strings float() reads, and no JSON can carry)."""
    kind = type(value)
    if kind is float or kind is int:
        number = float(value)
    elif kind is str:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _describe(value: Any) -> str:
    """A value for a log line: a string shortened, anything else by its type (never repr()'d:
    a value nested a thousand deep cannot be)."""
    return repr(value[:60]) if type(value) is str else type(value).__name__


def _json_text(value: Any, *, sort_keys: bool = False) -> str | None:
    """``value`` as JSON text; None when it nests deeper than the JSON writer goes (255)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None).decode()
    except orjson.JSONEncodeError:
        return None


def _fingerprint(raw: Any, read: list[Any]) -> str:
    """What tells one update from another: ``raw`` as sorted JSON, or, when it nests too deep
    to write out, what was ``read`` of it (flat)."""
    return _json_text(raw, sort_keys=True) or orjson.dumps(read).decode()


def _first_line(error: Exception) -> str:
    return str(error).split("\n", 1)[0][:200]


def _bool(value: Any) -> bool:
    return value is True


def _timestamp(value: Any, fallback: datetime) -> datetime:
    """Meta's unix seconds (a string of digits, or a number) as an aware datetime; ``fallback``
    (the arrival time) for anything else, or a time outside Meta's clock."""
    if type(value) is str and 0 < len(value) <= 12 and value.isascii() and value.isdigit():
        seconds: int | float = int(value)
    elif type(value) is int or type(value) is float:
        seconds = value
    else:
        return fallback
    if not EARLIEST_SECONDS <= seconds <= (fallback + CLOCK_SLACK).timestamp():
        return fallback  # also NaN, which compares false
    return datetime.fromtimestamp(seconds, UTC)


def _errors(value: Any) -> list[MetaError]:
    errors = []
    for item in _list(value):
        if type(item) is not dict:
            continue
        details = _str(_dict(item.get("error_data")).get("details")) or _str(item.get("details"))
        errors.append(
            MetaError(
                code=error_code(item.get("code")) or 0,
                title=_str(item.get("title")),
                message=_str(item.get("message")),
                details=details,
                href=_str(item.get("href")),
            )
        )
    return errors


# --------------------------------------------------------------------------- message content


@dataclass
class _Content:
    text: str | None = None
    media: Media | None = None
    location: Location | None = None
    reply: Reply | None = None
    reaction: Reaction | None = None
    contacts: list[Json] | None = None
    order: Json | None = None
    system: Json | None = None
    original_message_id: str | None = None


def _content(kind: str, message: Json, *, nested: bool = False) -> _Content:
    content = _Content()
    if kind == "text":
        content.text = _str(_dict(message.get("text")).get("body"))
    elif kind in MEDIA_TYPES:
        body = _dict(message.get(kind))
        voice = body.get("voice")
        animated = body.get("animated")
        content.media = Media(
            id=_str(body.get("id")),
            mime_type=_str(body.get("mime_type")),
            sha256=_str(body.get("sha256")),
            caption=_str(body.get("caption")),
            filename=_str(body.get("filename")),
            voice=voice if type(voice) is bool else None,
            animated=animated if type(animated) is bool else None,
            url=_str(body.get("url")),
        )
        content.text = content.media.caption
    elif kind == "location":
        body = _dict(message.get("location"))
        latitude = _float(body.get("latitude"))
        longitude = _float(body.get("longitude"))
        if latitude is not None and longitude is not None:
            content.location = Location(
                latitude=latitude,
                longitude=longitude,
                name=_str(body.get("name")),
                address=_str(body.get("address")),
                url=_str(body.get("url")),
            )
    elif kind == "interactive":
        body = _dict(message.get("interactive"))
        sub = _str(body.get("type"))
        if sub == "button_reply" or sub == "list_reply":
            tap = _dict(body.get(sub))
            content.reply = Reply(
                kind=sub,
                id=_str(tap.get("id")),
                title=_str(tap.get("title")),
                description=_str(tap.get("description")),
            )
            content.text = content.reply.title
        elif sub == "nfm_reply":
            tap = _dict(body.get("nfm_reply"))
            response = tap.get("response_json")
            content.reply = Reply(
                kind="nfm_reply",
                id=_str(tap.get("name")),
                title=_str(tap.get("body")),
                response_json=response
                if type(response) is str
                else (_json_text(response) if type(response) is dict else None),
            )
    elif kind == "button":
        body = _dict(message.get("button"))
        content.reply = Reply(
            kind="template_button", id=_str(body.get("payload")), title=_str(body.get("text"))
        )
        content.text = content.reply.title
    elif kind == "reaction":
        body = _dict(message.get("reaction"))
        target = _str(body.get("message_id"))
        if target is not None:
            content.reaction = Reaction(message_id=target, emoji=_text(body.get("emoji")))
    elif kind == "contacts":
        content.contacts = [item for item in _list(message.get("contacts")) if type(item) is dict]
    elif kind == "order":
        order = message.get("order")
        if type(order) is dict:
            content.order = order
            content.text = _text(order.get("text"))
    elif kind == "system":
        system = message.get("system")
        if type(system) is dict:
            content.system = system
    elif kind == "revoke":
        content.original_message_id = _str(_dict(message.get("revoke")).get("original_message_id"))
    elif kind == "edit" and not nested:
        body = _dict(message.get("edit"))
        inner = _dict(body.get("message"))
        inner_kind = _str(inner.get("type")) or ("text" if "text" in inner else "")
        edited = _content(inner_kind, inner, nested=True)
        edited.original_message_id = _str(body.get("original_message_id"))
        return edited
    return content


# --------------------------------------------------------------------------- identities


def _contact_index(contacts: list[Any]) -> tuple[dict[str, Json], Json | None]:
    """Contacts by wa_id and user_id, and the only contact when there is exactly one."""
    index: dict[str, Json] = {}
    for contact in contacts:
        if type(contact) is not dict:
            continue
        for key in ("wa_id", "user_id"):
            value = _str(contact.get(key))
            if value:
                index[key + ":" + value] = contact
    only = contacts[0] if len(contacts) == 1 and type(contacts[0]) is dict else None
    return index, only


def _compatible(contact: Json, phone: str | None, user_id: str | None) -> bool:
    contact_phone = _str(contact.get("wa_id"))
    contact_user = _str(contact.get("user_id"))
    if phone and contact_phone and contact_phone != phone:
        return False
    return not (user_id and contact_user and contact_user != user_id)


def _identity(
    phone: str | None,
    user_id: str | None,
    parent_user_id: str | None,
    index: dict[str, Json],
    only: Json | None,
) -> Identity:
    contact = None
    if phone:
        contact = index.get("wa_id:" + phone)
    if contact is None and user_id:
        contact = index.get("user_id:" + user_id)
    if contact is None:
        # The change's only contact, unless it names somebody else.
        contact = only if only is not None and _compatible(only, phone, user_id) else {}
    wa_id = phone or _id(contact.get("wa_id"))
    return Identity(
        phone=maybe_e164(wa_id),
        wa_id=wa_id,
        user_id=user_id or _id(contact.get("user_id")),
        parent_user_id=parent_user_id or _id(contact.get("parent_user_id")),
        name=_str(_dict(contact.get("profile")).get("name")),
    )


# --------------------------------------------------------------------------- updates


def _message(
    message: Json,
    *,
    phone_number_id: str,
    display_phone_number: str | None,
    waba_id: str | None,
    index: dict[str, Json],
    only: Json | None,
    received_at: datetime,
) -> InboundMessage:
    wamid = message["id"]
    meta_type = _str(message.get("type")) or ""
    kind = meta_type if meta_type in KNOWN_TYPES else "unsupported"
    content = _content(kind, message)
    timestamp = _timestamp(message.get("timestamp"), received_at)
    raw_context = _dict(message.get("context"))
    context = None
    if raw_context:
        product = raw_context.get("referred_product")
        context = MessageContext(
            message_id=_str(raw_context.get("id")),
            from_phone=maybe_e164(_str(raw_context.get("from"))),
            forwarded=_bool(raw_context.get("forwarded")),
            frequently_forwarded=_bool(raw_context.get("frequently_forwarded")),
            referred_product=product if type(product) is dict else None,
        )
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
        sender=_identity(
            _id(message.get("from")),
            _id(message.get("from_user_id")),
            _id(message.get("from_parent_user_id")),
            index,
            only,
        ),
        text=content.text,
        media=content.media,
        location=content.location,
        reply=content.reply,
        reaction=content.reaction,
        contacts=content.contacts,
        order=content.order,
        system=content.system,
        original_message_id=content.original_message_id,
        context=context,
        referral=referral if type(referral) is dict else None,
        errors=_errors(message.get("errors")),
        raw=message,
    )


def _status(
    status: Json,
    *,
    phone_number_id: str,
    index: dict[str, Json],
    only: Json | None,
    received_at: datetime,
) -> MessageStatus:
    wamid = status["id"]
    name = _str(status.get("status")) or "unknown"
    raw_timestamp = _str(status.get("timestamp")) or ""
    recipient = _identity(
        _id(status.get("recipient_id")),
        _id(status.get("recipient_user_id")),
        _id(status.get("recipient_parent_user_id")),
        index,
        only,
    )
    timestamp = _timestamp(status.get("timestamp"), received_at)
    pricing = status.get("pricing")
    conversation = status.get("conversation")
    recipient_key = recipient.wa_id or recipient.user_id or ""
    ref, data = untag(_str(status.get("biz_opaque_callback_data")))
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
        errors=_errors(status.get("errors")),
        pricing=pricing if type(pricing) is dict else None,
        conversation=conversation if type(conversation) is dict else None,
        biz_opaque_callback_data=data,
        command_id=ref.command_id if ref is not None else None,
        send_attempt=ref.attempt if ref is not None else None,
        raw=status,
    )


def _with_ids(items: list[Any], what: str, skipped: list[str]) -> Iterator[tuple[int, Json]]:
    """The items that are objects with an id (made a string), with their position; the others
    are reported in ``skipped``."""
    for position, item in enumerate(items):
        if type(item) is not dict or not _text(item.get("id")):
            skipped.append(f"{what} #{position} has no id")
            continue
        if not _id(item["id"]):
            skipped.append(f"{what} #{position}: id longer than {MAX_ID_BYTES} bytes")
            continue
        if type(item["id"]) is not str:
            item = {**item, "id": str(item["id"])}
        yield position, item


def _messages_change(
    value: Json, waba_id: str | None, received_at: datetime, parsed: Parsed
) -> None:
    metadata = _dict(value.get("metadata"))
    phone_number_id = _id(metadata.get("phone_number_id")) or ""
    display = _str(metadata.get("display_phone_number"))
    index, only = _contact_index(_list(value.get("contacts")))
    events = parsed.events
    for position, message in _with_ids(_list(value.get("messages")), "message", parsed.skipped):
        try:
            events.append(
                _message(
                    message,
                    phone_number_id=phone_number_id,
                    display_phone_number=display,
                    waba_id=waba_id,
                    index=index,
                    only=only,
                    received_at=received_at,
                )
            )
        except ValueError as error:  # a value no model accepts (pydantic's ValidationError)
            parsed.skipped.append(f"message #{position}: {_first_line(error)}")
    for position, status in _with_ids(_list(value.get("statuses")), "status", parsed.skipped):
        try:
            events.append(
                _status(
                    status,
                    phone_number_id=phone_number_id,
                    index=index,
                    only=only,
                    received_at=received_at,
                )
            )
        except ValueError as error:
            parsed.skipped.append(f"status #{position}: {_first_line(error)}")
    raw_errors = _list(value.get("errors"))
    if raw_errors:
        errors = _errors(raw_errors)
        if errors:
            fingerprint = _fingerprint(raw_errors, [error.model_dump() for error in errors])
            events.append(
                WebhookErrors(
                    event_id=stable_id(
                        WebhookErrors.TYPE, waba_id or "", phone_number_id, fingerprint
                    ),
                    occurred_at=received_at,
                    phone_number_id=phone_number_id or None,
                    errors=errors,
                )
            )
        else:
            parsed.skipped.append("errors[] without a readable error")


def _template_change(
    value: Json, waba_id: str | None, entry_time: Any, received_at: datetime, parsed: Parsed
) -> None:
    event = _str(value.get("event"))
    if not event:
        parsed.skipped.append("message_template_status_update without event")
        return
    template_id = _str(value.get("message_template_id"))
    name = _str(value.get("message_template_name"))
    language = _str(value.get("message_template_language"))
    reason = _str(value.get("reason"))
    fingerprint = _fingerprint(value, [event, template_id, name, language, reason])
    parsed.events.append(
        TemplateStatusUpdate(
            event_id=stable_id(
                TemplateStatusUpdate.TYPE, waba_id or "", str(_str(entry_time)), fingerprint
            ),
            occurred_at=_timestamp(entry_time, received_at),
            waba_id=waba_id,
            event=event,
            template_id=template_id,
            template_name=name,
            language=language,
            reason=reason,
            raw=value,
        )
    )


def parse_webhook(payload: Any, *, received_at: datetime) -> Parsed:
    """Every update of one webhook body (already JSON-decoded) as typed events.

    ``received_at`` stands in for a missing or unreadable timestamp. Never raises on any JSON
    value: what is not a WhatsApp Business Account payload is reported in ``ignored``.
    """
    parsed = Parsed()
    if type(payload) is not dict:
        parsed.ignored.append(f"body is a JSON {type(payload).__name__}, not an object")
        return parsed
    kind = payload.get("object")
    if kind != WABA_OBJECT:
        parsed.ignored.append(f"object {_describe(kind)} is not {WABA_OBJECT}")
        return parsed
    for entry in _list(payload.get("entry")):
        if type(entry) is not dict:
            parsed.skipped.append("entry is not an object")
            continue
        waba_id = _id(entry.get("id"))
        for change in _list(entry.get("changes")):
            if type(change) is not dict:
                parsed.skipped.append("change is not an object")
                continue
            name = _str(change.get("field")) or ""
            value = change.get("value")
            if name not in HANDLED_FIELDS:
                parsed.ignored.append(f"field {name[:60]!r} is not handled")
                continue
            if type(value) is not dict:
                parsed.skipped.append(f"field {name!r} without a value object")
                continue
            if name == "messages":
                _messages_change(value, waba_id, received_at, parsed)
            else:
                _template_change(value, waba_id, entry.get("time"), received_at, parsed)
    return parsed
