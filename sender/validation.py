"""Pure: a send command to the exact Graph API body, or a clear reason why it cannot be sent.

Nothing here does I/O. :func:`prepare` checks the command against Meta's limits (the table in
the Cloud API notes) and returns a :class:`Prepared` whose :meth:`Prepared.body` builds the body
(given the media id of an upload, when the command asked to upload first), or an
:class:`Invalid` with the reason. A command that fails here never reaches Meta.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sender.bodies import build_body
from sender.recipients import InvalidRecipient, is_bsuid, normalise_phone, normalise_recipient
from shared.events import (
    ButtonsContent,
    ContactsContent,
    CtaUrlContent,
    Header,
    ListContent,
    LocationContent,
    MarkReadContent,
    MediaContent,
    ReactionContent,
    SendMessage,
    TemplateContent,
    TextContent,
)
from shared.meta_limits import (
    BUTTON_ID_MAX,
    BUTTON_TITLE_MAX,
    BUTTONS_MAX,
    CAPTION_MAX,
    CAPTIONED,
    CTA_DISPLAY_TEXT_MAX,
    FILENAME_MAX,
    HEADER_FOOTER_MAX,
    INTERACTIVE_BODY_MAX,
    LIST_BODY_MAX,
    LIST_BUTTON_MAX,
    OPAQUE_DATA_MAX,
    ROW_DESCRIPTION_MAX,
    ROW_ID_MAX,
    ROW_TITLE_MAX,
    ROWS_MAX,
    SECTION_TITLE_MAX,
    SECTIONS_MAX,
    TEMPLATE_NAME_MAX,
    TEXT_BODY_MAX,
)

MEDIA_SOURCES = ("media_id", "link", "upload_url", "upload_base64", "copy_from_media_id")
TEMPLATE_COMPONENTS = ("header", "body", "button", "footer", "carousel", "limited_time_offer")
TEMPLATE_PARAMETERS = (
    "text",
    "currency",
    "date_time",
    "image",
    "video",
    "document",
    "location",
    "payload",
    "coupon_code",
    "action",
    "order_status",
    "expiration_time_ms",
    "limited_time_offer",
    "product",
    "tap_target_configuration",
)
BUTTON_SUB_TYPES = ("quick_reply", "url", "copy_code", "flow", "catalog", "mpm", "voice_call")


class InvalidCommand(ValueError):
    """A rule the command breaks; the message is the reason given in ``MessageFailed``."""


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


@dataclass(frozen=True, slots=True)
class Upload:
    """Media to upload before sending: from a URL, decoded bytes, or a copy of Meta media."""

    media_type: str
    url: str | None
    data: bytes | None
    mime_type: str | None
    filename: str | None
    copy_from: str | None = None  # a media id at Meta to download and upload again


@dataclass(frozen=True, slots=True)
class Prepared:
    """A valid command: the recipient (+E164, or a BSUID) and what is needed to build the body."""

    command: SendMessage
    to: str  # +E164, or a business-scoped user id
    kind: str
    upload: Upload | None
    to_phone: str | None = None  # +E164: the same customer's phone, when ``to`` is a BSUID

    @property
    def to_bsuid(self) -> bool:
        return is_bsuid(self.to)

    @property
    def is_message(self) -> bool:
        """False for mark-as-read (no wamid, no recipient-facing message, no pair limit)."""
        return self.kind != "mark_read"

    def body(
        self,
        media_id: str | None = None,
        *,
        template: TemplateContent | None = None,
        to: str | None = None,
    ) -> dict[str, Any]:
        """The Graph body; ``template`` replaces the content (a fallback template), ``to`` the
        recipient (the customer's phone, when Meta refused the BSUID)."""
        return build_body(self.command, to or self.to, media_id=media_id, template=template)


def prepare(command: SendMessage, *, now: datetime | None = None) -> Prepared | Invalid:
    """Check every rule; the first one broken is the reason."""
    try:
        to = normalise_recipient(command.to) if command.content.kind != "mark_read" else ""
        if command.content.kind == "mark_read" and command.to:
            # A read receipt names no recipient, but a given one must still be a number.
            to = normalise_recipient(command.to)
        if now is not None and command.valid_until is not None and command.valid_until <= now:
            raise InvalidCommand("the command's validity period had already ended")
        if command.biz_opaque_callback_data is not None:
            _limit(command.biz_opaque_callback_data, "biz_opaque_callback_data", OPAQUE_DATA_MAX)
        if command.reply_to is not None:
            if command.content.kind in ("mark_read", "reaction"):
                raise InvalidCommand(f"reply_to cannot be used with {command.content.kind}")
            _required(command.reply_to, "reply_to")
        upload = _check_content(command)
        if command.fallback_template is not None:
            _check_template(command.fallback_template, "fallback_template")
        to_phone = normalise_phone(command.to_phone) if command.to_phone else None
    except (InvalidCommand, InvalidRecipient) as error:
        return Invalid(str(error))
    return Prepared(
        command=command, to=to, kind=command.content.kind, upload=upload, to_phone=to_phone
    )


# --------------------------------------------------------------------------- rules


def _required(value: str | None, field: str) -> str:
    if value is None or not value.strip():
        raise InvalidCommand(f"{field} is required")
    return value


def _limit(value: str, field: str, max_len: int, *, required: bool = False) -> None:
    if required:
        _required(value, field)
    if len(value) > max_len:
        raise InvalidCommand(f"{field} is {len(value)} characters long; the limit is {max_len}")


def _http_url(value: str, field: str) -> None:
    _required(value, field)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidCommand(f"{field} must be an http(s) URL, got {value!r}")


def _check_content(command: SendMessage) -> Upload | None:
    content = command.content
    if isinstance(content, TextContent):
        _limit(content.body, "text body", TEXT_BODY_MAX, required=True)
    elif isinstance(content, MediaContent):
        return _check_media(content, content.kind)
    elif isinstance(content, TemplateContent):
        _check_template(content, "template")
    elif isinstance(content, ButtonsContent):
        _check_buttons(content)
        if content.header is not None:
            return _check_header(content.header)
    elif isinstance(content, ListContent):
        _check_list(content)
    elif isinstance(content, CtaUrlContent):
        _limit(content.body, "body", INTERACTIVE_BODY_MAX, required=True)
        _limit(content.display_text, "display_text", CTA_DISPLAY_TEXT_MAX, required=True)
        _http_url(content.url, "url")
        if content.footer is not None:
            _limit(content.footer, "footer", HEADER_FOOTER_MAX)
        if content.header is not None:
            return _check_header(content.header)
    elif isinstance(content, LocationContent):
        if not -90 <= content.latitude <= 90:
            raise InvalidCommand(f"latitude must be between -90 and 90, got {content.latitude}")
        if not -180 <= content.longitude <= 180:
            raise InvalidCommand(f"longitude must be between -180 and 180, got {content.longitude}")
    elif isinstance(content, ContactsContent):
        _check_contacts(content)
    elif isinstance(content, ReactionContent):
        _required(content.message_id, "reaction message_id")
        if len(content.emoji) > 10:
            raise InvalidCommand("reaction emoji must be one emoji (or empty to remove it)")
    elif isinstance(content, MarkReadContent):
        _required(content.message_id, "mark_read message_id")
    return None


def _check_media(media: MediaContent, kind: str, *, field: str = "") -> Upload | None:
    where = f"{field}{kind}"
    sources = [name for name in MEDIA_SOURCES if getattr(media, name) not in (None, "")]
    if len(sources) != 1:
        raise InvalidCommand(
            f"{where} needs exactly one of {', '.join(MEDIA_SOURCES)}"
            f" (got {', '.join(sources) or 'none'})"
        )
    if media.caption is not None:
        if kind not in CAPTIONED:
            raise InvalidCommand(f"{where} cannot have a caption (only image, video, document)")
        _limit(media.caption, f"{where} caption", CAPTION_MAX)
    if media.filename is not None:
        if kind != "document":
            raise InvalidCommand(f"{where} cannot have a filename (only document)")
        _limit(media.filename, f"{where} filename", FILENAME_MAX)
    if media.link is not None:
        _http_url(media.link, f"{where} link")
    if media.upload_url is not None:
        _http_url(media.upload_url, f"{where} upload_url")
        return Upload(kind, media.upload_url, None, media.mime_type, media.filename)
    if media.upload_base64 is not None:
        if not media.mime_type:
            raise InvalidCommand(f"{where} upload_base64 needs mime_type")
        try:
            data = base64.b64decode(media.upload_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCommand(f"{where} upload_base64 is not valid base64") from None
        if not data:
            raise InvalidCommand(f"{where} upload_base64 is empty")
        return Upload(kind, None, data, media.mime_type, media.filename)
    if media.copy_from_media_id is not None:
        media_id = media.copy_from_media_id.strip()
        if not media_id or any(c in "/?#&" or c.isspace() for c in media_id):
            raise InvalidCommand(
                f"{where} copy_from_media_id must be a media id, got {media.copy_from_media_id!r}"
            )
        return Upload(kind, None, None, media.mime_type, media.filename, copy_from=media_id)
    return None


def _check_header(header: Header) -> Upload | None:
    if header.type == "text":
        _limit(header.text or "", "header text", HEADER_FOOTER_MAX, required=True)
        return None
    if header.media is None:
        raise InvalidCommand(f"a {header.type} header needs media")
    if header.media.kind != header.type:
        raise InvalidCommand(f"a {header.type} header cannot carry {header.media.kind} media")
    return _check_media(header.media, header.type, field="header ")


def _check_buttons(content: ButtonsContent) -> None:
    _limit(content.body, "body", INTERACTIVE_BODY_MAX, required=True)
    if content.footer is not None:
        _limit(content.footer, "footer", HEADER_FOOTER_MAX)
    if not 1 <= len(content.buttons) <= BUTTONS_MAX:
        raise InvalidCommand(
            f"reply buttons: 1 to {BUTTONS_MAX} buttons, got {len(content.buttons)}"
        )
    ids: set[str] = set()
    titles: set[str] = set()
    for number, button in enumerate(content.buttons, 1):
        _limit(button.title, f"button {number} title", BUTTON_TITLE_MAX, required=True)
        _limit(button.id, f"button {number} id", BUTTON_ID_MAX, required=True)
        if button.id in ids:
            raise InvalidCommand(f"button ids must be unique: {button.id!r} repeats")
        title = button.title.strip().casefold()
        if title in titles:
            raise InvalidCommand(f"button titles must be unique: {button.title!r} repeats")
        ids.add(button.id)
        titles.add(title)


def _check_list(content: ListContent) -> None:
    _limit(content.body, "body", LIST_BODY_MAX, required=True)
    _limit(content.button, "list button", LIST_BUTTON_MAX, required=True)
    if content.header is not None:
        _limit(content.header, "header", HEADER_FOOTER_MAX)
    if content.footer is not None:
        _limit(content.footer, "footer", HEADER_FOOTER_MAX)
    if not 1 <= len(content.sections) <= SECTIONS_MAX:
        raise InvalidCommand(f"list: 1 to {SECTIONS_MAX} sections, got {len(content.sections)}")
    total = sum(len(section.rows) for section in content.sections)
    if not 1 <= total <= ROWS_MAX:
        raise InvalidCommand(f"list: 1 to {ROWS_MAX} rows in total, got {total}")
    ids: set[str] = set()
    for s, section in enumerate(content.sections, 1):
        if not section.rows:
            raise InvalidCommand(f"list section {s} has no rows")
        if section.title is not None:
            _limit(section.title, f"section {s} title", SECTION_TITLE_MAX)
        if len(content.sections) > 1 and not (section.title or "").strip():
            raise InvalidCommand(f"section {s} needs a title when there is more than one section")
        for r, row in enumerate(section.rows, 1):
            where = f"section {s} row {r}"
            _limit(row.id, f"{where} id", ROW_ID_MAX, required=True)
            _limit(row.title, f"{where} title", ROW_TITLE_MAX, required=True)
            if row.description is not None:
                _limit(row.description, f"{where} description", ROW_DESCRIPTION_MAX)
            if row.id in ids:
                raise InvalidCommand(f"list row ids must be unique: {row.id!r} repeats")
            ids.add(row.id)


def _check_contacts(content: ContactsContent) -> None:
    if not content.contacts:
        raise InvalidCommand("contacts: at least one contact is required")
    for number, contact in enumerate(content.contacts, 1):
        name = contact.get("name")
        if not isinstance(name, dict) or not str(name.get("formatted_name") or "").strip():
            raise InvalidCommand(f"contact {number} needs name.formatted_name")


def _check_template(template: TemplateContent, field: str) -> None:
    _limit(template.name, f"{field} name", TEMPLATE_NAME_MAX, required=True)
    _required(template.language, f"{field} language")
    for number, component in enumerate(template.components, 1):
        where = f"{field} component {number}"
        kind = component.get("type")
        if kind not in TEMPLATE_COMPONENTS:
            raise InvalidCommand(
                f"{where} type must be one of {', '.join(TEMPLATE_COMPONENTS)}, got {kind!r}"
            )
        if kind == "button":
            if component.get("sub_type") not in BUTTON_SUB_TYPES:
                raise InvalidCommand(
                    f"{where} (button) needs sub_type, one of {', '.join(BUTTON_SUB_TYPES)}"
                )
            index = component.get("index")
            if (
                isinstance(index, bool)
                or not isinstance(index, int | str)
                or not str(index).isdigit()
            ):
                raise InvalidCommand(f"{where} (button) needs a numeric index")
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list):
            raise InvalidCommand(f"{where} parameters must be a list")
        for p, parameter in enumerate(parameters, 1):
            pwhere = f"{where} parameter {p}"
            if not isinstance(parameter, dict):
                raise InvalidCommand(f"{pwhere} must be an object")
            ptype = parameter.get("type")
            if ptype not in TEMPLATE_PARAMETERS:
                raise InvalidCommand(f"{pwhere} has an unknown type {ptype!r}")
            if ptype not in ("action", "limited_time_offer", "tap_target_configuration") and (
                ptype not in parameter
            ):
                raise InvalidCommand(f"{pwhere} of type {ptype} needs a {ptype!r} value")
            if ptype == "text":
                value = parameter["text"]
                if not isinstance(value, str) or not value.strip():
                    raise InvalidCommand(f"{pwhere} text is empty")
                if kind == "header":
                    _limit(value, f"{pwhere} text", HEADER_FOOTER_MAX)
            if ptype in ("image", "video", "document"):
                media = parameter[ptype]
                if not isinstance(media, dict) or not (media.get("id") or media.get("link")):
                    raise InvalidCommand(f"{pwhere} {ptype} needs an id or a link")
                if media.get("link"):
                    _http_url(str(media["link"]), f"{pwhere} {ptype} link")
