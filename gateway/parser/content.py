"""What a message says: its text, media, location, taps, reaction, ... by Meta's type.

Shared by the customers' messages (``messages``), what the business app sent
(``smb_message_echoes``) and past chats (``history``): the three carry the same message objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.parser.read import (
    Json,
    as_dict,
    as_dicts,
    as_float,
    as_moment,
    as_str,
    as_text,
    json_text,
)
from shared.events import CallPermission, Location, Media, Reaction, Reply

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
# How far ahead a call permission may expire (Meta grants 7 days; a year bounds nonsense).
PERMISSION_HORIZON = timedelta(days=366)


@dataclass
class Content:
    text: str | None = None
    media: Media | None = None
    location: Location | None = None
    reply: Reply | None = None
    reaction: Reaction | None = None
    call_permission: CallPermission | None = None
    contacts: list[Json] | None = None
    order: Json | None = None
    system: Json | None = None
    original_message_id: str | None = None


def message_kind(message: Json) -> str:
    """Meta's type of a message, ``unsupported`` for a type Mensajero does not know."""
    meta_type = as_str(message.get("type")) or ""
    return meta_type if meta_type in KNOWN_TYPES else "unsupported"


def content(kind: str, message: Json, now: datetime, *, nested: bool = False) -> Content:
    found = Content()
    if kind == "text":
        found.text = as_str(as_dict(message.get("text")).get("body"))
    elif kind in MEDIA_TYPES:
        found.media = _media(as_dict(message.get(kind)))
        found.text = found.media.caption
    elif kind == "location":
        found.location = _location(as_dict(message.get("location")))
    elif kind == "interactive":
        _interactive(as_dict(message.get("interactive")), found, now)
    elif kind == "button":
        body = as_dict(message.get("button"))
        found.reply = Reply(
            kind="template_button", id=as_str(body.get("payload")), title=as_str(body.get("text"))
        )
        found.text = found.reply.title
    elif kind == "reaction":
        body = as_dict(message.get("reaction"))
        target = as_str(body.get("message_id"))
        if target is not None:
            found.reaction = Reaction(message_id=target, emoji=as_text(body.get("emoji")))
    elif kind == "contacts":
        found.contacts = as_dicts(message.get("contacts"))
    elif kind == "order":
        order = message.get("order")
        if type(order) is dict:
            found.order = order
            found.text = as_text(order.get("text"))
    elif kind == "system":
        system = message.get("system")
        if type(system) is dict:
            found.system = system
    elif kind == "revoke":
        found.original_message_id = as_str(
            as_dict(message.get("revoke")).get("original_message_id")
        )
    elif kind == "edit" and not nested:
        body = as_dict(message.get("edit"))
        inner = as_dict(body.get("message"))
        inner_kind = as_str(inner.get("type")) or ("text" if "text" in inner else "")
        edited = content(inner_kind, inner, now, nested=True)
        edited.original_message_id = as_str(body.get("original_message_id"))
        return edited
    return found


def _media(body: Json) -> Media:
    voice = body.get("voice")
    animated = body.get("animated")
    return Media(
        id=as_str(body.get("id")),
        mime_type=as_str(body.get("mime_type")),
        sha256=as_str(body.get("sha256")),
        caption=as_str(body.get("caption")),
        filename=as_str(body.get("filename")),
        voice=voice if type(voice) is bool else None,
        animated=animated if type(animated) is bool else None,
        url=as_str(body.get("url")),
    )


def _location(body: Json) -> Location | None:
    latitude = as_float(body.get("latitude"))
    longitude = as_float(body.get("longitude"))
    if latitude is None or longitude is None:
        return None
    return Location(
        latitude=latitude,
        longitude=longitude,
        name=as_str(body.get("name")),
        address=as_str(body.get("address")),
        url=as_str(body.get("url")),
    )


def _interactive(body: Json, found: Content, now: datetime) -> None:
    sub = as_str(body.get("type"))
    if sub == "button_reply" or sub == "list_reply":
        tap = as_dict(body.get(sub))
        found.reply = Reply(
            kind=sub,
            id=as_str(tap.get("id")),
            title=as_str(tap.get("title")),
            description=as_str(tap.get("description")),
        )
        found.text = found.reply.title
    elif sub == "nfm_reply":
        tap = as_dict(body.get("nfm_reply"))
        response = tap.get("response_json")
        found.reply = Reply(
            kind="nfm_reply",
            id=as_str(tap.get("name")),
            title=as_str(tap.get("body")),
            response_json=response
            if type(response) is str
            else (json_text(response) if type(response) is dict else None),
        )
    elif sub == "call_permission_reply":
        found.call_permission = _call_permission(as_dict(body.get(sub)), now)


def _call_permission(reply: Json, now: datetime) -> CallPermission | None:
    """The customer's answer to a call permission request (not text: nothing to answer)."""
    response = as_text(reply.get("response"))
    if response is None:
        return None
    permanent = reply.get("is_permanent")
    return CallPermission(
        response=response,
        expires_at=as_moment(reply.get("expiration_timestamp"), now, ahead=PERMISSION_HORIZON),
        response_source=as_str(reply.get("response_source")),
        permanent=permanent if type(permanent) is bool else None,
    )
