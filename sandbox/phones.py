"""The phones: people writing to the business, and what each of them received from it.

A person writes with a phone (`from`), a business-scoped user id (`user_id`, for a customer who
hides the phone behind a username), or both; the webhook then carries the identifiers Meta would
show (see `sandbox.payloads`).
"""

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
from sandbox.keys import STATE_KEY
from sandbox.payloads import contact, envelope, user_ids
from sandbox.people import IdentityConflict, Person, is_bsuid, parse_identifier
from sandbox.state import SandboxState
from sandbox.validation import MEDIA_TYPES
from shared.phone import maybe_e164

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

    sender: str | None = Field(default=None, alias="from", min_length=1)
    name: str = "Usuario"
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    withhold_phone: bool = False
    context_id: str | None = None
    timestamp: int | None = None
    # A click-to-WhatsApp ad's `referral`: the message carries it, and it opens a free entry
    # point window (72 h of free messages).
    referral: dict[str, Any] | None = None
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


def build_message(
    request: InboundRequest,
    *,
    person: Person,
    wamid: str,
    timestamp: int,
    context_from: str | None,
    media: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An entry of `messages[]` in Meta's shape: `from` only when the phone may be shown,
    `from_user_id` (and `from_parent_user_id`) always."""
    kind = request.kind()
    message: dict[str, Any] = {}
    if request.context_id:
        message["context"] = {"from": context_from, "id": request.context_id}
    if person.visible_phone:
        message["from"] = person.visible_phone
    message.update(user_ids(person, "from_"))
    message["id"] = wamid
    message["timestamp"] = str(timestamp)
    if request.referral is not None:
        message["referral"] = request.referral
    if kind == "message":
        assert request.message is not None
        message.update(request.message)
        message.setdefault("type", "unknown")
        return message
    message["type"] = "interactive" if kind in ("button_reply", "list_reply") else kind
    message.update(_content(request, kind, media))
    return message


def _content(request: InboundRequest, kind: str, media: dict[str, Any] | None) -> dict[str, Any]:
    if kind == "text":
        return {"text": {"body": request.text}}
    if kind in ("button_reply", "list_reply"):
        reply = getattr(request, kind)
        return {"interactive": {"type": kind, kind: reply.model_dump(exclude_none=True)}}
    if kind in MEDIA_TYPES:
        return {kind: media or {}}
    if kind == "contacts":
        return {"contacts": request.contacts}
    part = getattr(request, kind)
    return {kind: part.model_dump(exclude_none=kind == "location")}


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


class InboundError(ValueError):
    """A request the sandbox cannot turn into a message (answered 400 with this reason)."""


def writer(state: SandboxState, request: InboundRequest) -> Person:
    """The person writing, linked to every identifier the request gives."""
    phone = None
    if request.sender is not None:
        phone = maybe_e164(request.sender)
        if phone is None:
            raise InboundError(f"'from' is not a phone number: {request.sender!r}")
    for name in ("user_id", "parent_user_id"):
        value = getattr(request, name)
        if value is not None and not is_bsuid(value):
            raise InboundError(f"{name} is not a business-scoped user id (like AR.123): {value!r}")
    try:
        person = state.people.for_inbound(phone, request.user_id, request.parent_user_id)
    except IdentityConflict as exc:
        raise InboundError(str(exc)) from None
    except ValueError as exc:
        raise InboundError(str(exc)) from None
    person.name = request.name
    if request.username is not None:
        person.username = request.username
    person.phone_hidden = request.withhold_phone or phone is None
    return person


def prepare(state: SandboxState, request: InboundRequest) -> tuple[dict[str, Any], Person, str]:
    """A person writes to the business: Meta's webhook payload (to post), the person and the
    wamid. The window opens before the business hears of the message, so it can answer."""
    kind = request.kind()
    person = writer(state, request)
    media = None
    if kind in MEDIA_TYPES:
        try:
            media = _store_media(state, kind, getattr(request, kind))
        except ValueError as exc:
            raise InboundError(f"{kind}.data_base64 is not base64: {exc}") from None
    context_from = None
    if request.context_id:
        quoted = state.people.by_key(state.inbound.get(request.context_id, ""))
        # A quoted customer message names that customer; a quoted business message, the business.
        context_from = (quoted.visible_phone or quoted.user_id) if quoted else None
        context_from = context_from or state.config.display_digits
    wamid = state.ids.wamid(person.wamid_owner, outbound=False)
    message = build_message(
        request,
        person=person,
        wamid=wamid,
        timestamp=request.timestamp or int(state.clock()),
        context_from=context_from,
        media=media,
    )
    state.open_window(person)
    if request.referral is not None:
        state.open_free_entry_point(person)
    state.inbound[wamid] = person.key
    return envelope(state.config, contacts=[contact(person)], messages=[message]), person, wamid


async def receive(state: SandboxState, request: InboundRequest) -> dict[str, Any]:
    """Post what a person writes (signed), and say what became of it."""
    payload, person, wamid = prepare(state, request)
    delivery = await state.dispatcher.deliver_now(payload)
    answer: dict[str, Any] = {
        "wamid": wamid,
        "gateway_status": delivery.status or 0,
        "user_id": person.user_id,
        "phone": person.phone,
    }
    if delivery.error:
        answer["error"] = delivery.error
    return answer


async def inbound(request: web.Request) -> web.Response:
    """`POST /_sandbox/inbound`: someone writes to the business."""
    try:
        message_request = InboundRequest.model_validate(orjson.loads(await request.read()))
        message_request.kind()
        return json_response(await receive(request.app[STATE_KEY], message_request))
    except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
        return _bad_request(str(exc))


def person_at(state: SandboxState, identifier: str) -> Person:
    """The person a path names by phone or BSUID (a new one when unknown)."""
    if parse_identifier(identifier) is None:
        raise InboundError(f"not a phone number or a business-scoped user id: {identifier!r}")
    return state.people.get_or_create(identifier)


async def phone_messages(request: web.Request) -> web.Response:
    """`?after=<index>` returns only later messages; `?wait=<s>` long-polls for them."""
    state = request.app[STATE_KEY]
    try:
        person = person_at(state, request.match_info["number"])
    except InboundError as exc:
        return _bad_request(str(exc))
    try:
        after = int(request.query.get("after", "-1"))
        wait = min(float(request.query.get("wait", "0")), MAX_WAIT_SECONDS)
    except ValueError:
        return _bad_request("'after' must be an integer and 'wait' a number of seconds")

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    inbox = state.inbox(person)
    found = inbox.after(after)
    while not found and not state.closing.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(inbox.changed.wait(), remaining)
        inbox = state.inbox(person)  # a reset replaces the inbox
        found = inbox.after(after)
    return json_response({"phone": person.phone, "user_id": person.user_id, "messages": found})


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/_sandbox/inbound", inbound)
    app.router.add_get("/_sandbox/phones/{number}/messages", phone_messages)
