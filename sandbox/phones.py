"""The phones: people writing to the business, and what each phone received from it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
import zlib
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.graph import json_response
from sandbox.ids import business_scoped_user_id
from sandbox.keys import STATE_KEY
from sandbox.state import SandboxState
from sandbox.validation import MEDIA_TYPES
from sandbox.webhooks import envelope
from shared.phone import digits, maybe_e164

MAX_WAIT_SECONDS = 60.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reply(_Strict):
    id: str = Field(min_length=1)
    title: str


class ListReply(Reply):
    description: str | None = None


class TemplateButtonReply(_Strict):
    payload: str
    text: str


class InboundMedia(_Strict):
    id: str | None = None
    caption: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    voice: bool | None = None
    data_base64: str | None = None


class InboundLocation(_Strict):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class InboundReaction(_Strict):
    message_id: str
    emoji: str = ""


CONTENT_FIELDS = (
    "text",
    "button_reply",
    "list_reply",
    "button",
    *MEDIA_TYPES,
    "location",
    "reaction",
    "contacts",
    "message",
)


class InboundRequest(_Strict):
    """The JSON of `POST /_sandbox/inbound`: who writes, and exactly one kind of content."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: str = Field(alias="from", min_length=1)
    name: str = "Usuario"
    user_id: str | None = None
    username: str | None = None
    withhold_phone: bool = False
    context_id: str | None = None
    timestamp: int | None = None
    text: str | None = None
    button_reply: Reply | None = None
    list_reply: ListReply | None = None
    button: TemplateButtonReply | None = None
    image: InboundMedia | None = None
    video: InboundMedia | None = None
    audio: InboundMedia | None = None
    document: InboundMedia | None = None
    sticker: InboundMedia | None = None
    location: InboundLocation | None = None
    reaction: InboundReaction | None = None
    contacts: list[dict[str, Any]] | None = None
    # Any other messages[] item (order, system, unsupported...): merged into the message as is.
    message: dict[str, Any] | None = None

    def kind(self) -> str:
        given = [name for name in CONTENT_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(CONTENT_FIELDS)} (got {given})")
        return given[0]


def _png_pixel() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


# Bytes and MIME type the sandbox stores for a phone's media when none are given.
PLACEHOLDER_MEDIA: dict[str, tuple[str, bytes]] = {
    "image": ("image/png", _png_pixel()),
    "video": ("video/mp4", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"),
    "audio": ("audio/ogg; codecs=opus", b"OggS\x00\x02" + b"\x00" * 20),
    "document": ("application/pdf", b"%PDF-1.4\n% sandbox document\n%%EOF\n"),
    "sticker": ("image/webp", b"RIFF\x1a\x00\x00\x00WEBPVP8 "),
}


def build_contact(request: InboundRequest, phone: str, user_id: str) -> dict[str, Any]:
    """An entry of `contacts[]`: `profile{name}`, `wa_id` (unless withheld), `user_id`."""
    profile: dict[str, Any] = {"name": request.name}
    if request.username:
        profile["username"] = request.username
    contact: dict[str, Any] = {"profile": profile}
    if not request.withhold_phone:
        contact["wa_id"] = digits(phone)
    contact["user_id"] = user_id
    return contact


def build_message(
    request: InboundRequest,
    *,
    phone: str,
    wamid: str,
    timestamp: int,
    context_from: str | None,
    media: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An entry of `messages[]` in Meta's shape (`from` left out when the phone is withheld)."""
    kind = request.kind()
    message: dict[str, Any] = {}
    if request.context_id:
        message["context"] = {"from": context_from, "id": request.context_id}
    if not request.withhold_phone:
        message["from"] = digits(phone)
    message["id"] = wamid
    message["timestamp"] = str(timestamp)
    if kind == "message":
        assert request.message is not None
        message.update(request.message)
        message.setdefault("type", "unknown")
        return message
    if kind == "text":
        message["type"] = "text"
        message["text"] = {"body": request.text}
    elif kind in ("button_reply", "list_reply"):
        reply = getattr(request, kind)
        message["type"] = "interactive"
        message["interactive"] = {"type": kind, kind: reply.model_dump(exclude_none=True)}
    elif kind == "button":
        assert request.button is not None
        message["type"] = "button"
        message["button"] = request.button.model_dump()
    elif kind in MEDIA_TYPES:
        message["type"] = kind
        message[kind] = media or {}
    elif kind == "location":
        assert request.location is not None
        message["type"] = "location"
        message["location"] = request.location.model_dump(exclude_none=True)
    elif kind == "reaction":
        assert request.reaction is not None
        message["type"] = "reaction"
        message["reaction"] = request.reaction.model_dump()
    else:
        message["type"] = "contacts"
        message["contacts"] = request.contacts
    return message


def _store_media(state: SandboxState, kind: str, given: InboundMedia) -> dict[str, Any]:
    """Keep the phone's media (given bytes or a placeholder) and describe it as Meta does."""
    stored = state.media.get(given.id) if given.id else None
    if stored is None:
        mime_type, data = PLACEHOLDER_MEDIA[kind]
        if given.data_base64 is not None:
            data = base64.b64decode(given.data_base64, validate=True)
        stored = state.store_media(data, given.mime_type or mime_type, given.filename)
    described: dict[str, Any] = {}
    if given.caption is not None:
        described["caption"] = given.caption
    if kind == "document":
        described["filename"] = given.filename or "document.pdf"
    described["mime_type"] = stored.mime_type
    described["sha256"] = base64.b64encode(bytes.fromhex(stored.sha256)).decode()
    described["id"] = stored.id
    if kind == "audio":
        described["voice"] = bool(given.voice)
    if kind == "sticker":
        described["animated"] = False
    return described


def _bad_request(message: str) -> web.Response:
    return json_response({"error": message}, status=400)


async def inbound(request: web.Request) -> web.Response:
    """A phone writes to the business: build Meta's webhook, sign it, post it, open the window."""
    state = request.app[STATE_KEY]
    try:
        data = orjson.loads(await request.read())
        message_request = InboundRequest.model_validate(data)
        kind = message_request.kind()
    except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
        return _bad_request(str(exc))
    phone = maybe_e164(message_request.sender)
    if phone is None:
        return _bad_request(f"'from' is not a phone number: {message_request.sender!r}")

    media = None
    if kind in MEDIA_TYPES:
        try:
            media = _store_media(state, kind, getattr(message_request, kind))
        except ValueError as exc:
            return _bad_request(f"{kind}.data_base64 is not base64: {exc}")
    context_from = None
    if message_request.context_id:
        quoted = state.inbound.get(message_request.context_id)
        context_from = digits(quoted) if quoted else state.config.display_digits
    user_id = message_request.user_id or business_scoped_user_id(phone, state.config.waba_id)
    wamid = state.ids.wamid(digits(phone), outbound=False)
    message = build_message(
        message_request,
        phone=phone,
        wamid=wamid,
        timestamp=message_request.timestamp or int(state.clock()),
        context_from=context_from,
        media=media,
    )
    payload = envelope(
        state.config,
        contacts=[build_contact(message_request, phone, user_id)],
        messages=[message],
    )
    # The window opens before the business hears of the message, so an instant reply is allowed.
    state.open_window(phone)
    state.inbound[wamid] = phone
    delivery = await state.dispatcher.deliver_now(payload)
    answer: dict[str, Any] = {
        "wamid": wamid,
        "gateway_status": delivery.status or 0,
        "user_id": user_id,
    }
    if delivery.error:
        answer["error"] = delivery.error
    return json_response(answer)


async def phone_messages(request: web.Request) -> web.Response:
    """`?after=<index>` returns only later messages; `?wait=<s>` long-polls for them."""
    state = request.app[STATE_KEY]
    phone = maybe_e164(request.match_info["number"])
    if phone is None:
        return _bad_request(f"not a phone number: {request.match_info['number']!r}")
    try:
        after = int(request.query.get("after", "-1"))
        wait = min(float(request.query.get("wait", "0")), MAX_WAIT_SECONDS)
    except ValueError:
        return _bad_request("'after' must be an integer and 'wait' a number of seconds")

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    inbox = state.inbox(phone)
    found = inbox.after(after)
    while not found and not state.closing.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(inbox.changed.wait(), remaining)
        inbox = state.inbox(phone)  # a reset replaces the inbox
        found = inbox.after(after)
    return json_response({"phone": phone, "messages": found})


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/_sandbox/inbound", inbound)
    app.router.add_get("/_sandbox/phones/{number}/messages", phone_messages)
