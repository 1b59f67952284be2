"""Pure: the exact Graph API body of a valid send command (``sender.validation`` checks it)."""

from __future__ import annotations

from typing import Any

from sender.recipients import is_bsuid
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
from shared.meta_limits import CAPTIONED


def build_body(
    command: SendMessage,
    to: str,
    *,
    media_id: str | None = None,
    template: TemplateContent | None = None,
) -> dict[str, Any]:
    """The exact Graph body to ``to`` (+E164 or a BSUID). ``media_id``: the id of the upload
    made for this command."""
    content = template if template is not None else command.content
    if isinstance(content, MarkReadContent):
        return _receipt(content)
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    # A customer known only by their business-scoped user id: Meta's ``recipient``.
    body["recipient" if is_bsuid(to) else "to"] = to
    if command.reply_to and template is None:
        body["context"] = {"message_id": command.reply_to}
    if command.biz_opaque_callback_data is not None:
        body["biz_opaque_callback_data"] = command.biz_opaque_callback_data
    kind, value = _content(content, media_id)
    body["type"] = kind
    body[kind] = value
    return body


def _receipt(content: MarkReadContent) -> dict[str, Any]:
    receipt: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": content.message_id,
    }
    if content.typing:
        receipt["typing_indicator"] = {"type": "text"}
    return receipt


def _content(content: object, media_id: str | None) -> tuple[str, Any]:
    """Meta's ``type`` and the object under it."""
    if isinstance(content, TextContent):
        return "text", {"body": content.body, "preview_url": content.preview_url}
    if isinstance(content, MediaContent):
        return content.kind, _media_object(content, content.kind, media_id)
    if isinstance(content, TemplateContent):
        tpl: dict[str, Any] = {"name": content.name, "language": {"code": content.language}}
        if content.components:
            tpl["components"] = content.components
        return "template", tpl
    if isinstance(content, ButtonsContent | ListContent | CtaUrlContent):
        return "interactive", _interactive_content(content, media_id)
    if isinstance(content, LocationContent):
        return "location", _location(content)
    if isinstance(content, ContactsContent):
        return "contacts", content.contacts
    if isinstance(content, ReactionContent):
        return "reaction", {"message_id": content.message_id, "emoji": content.emoji}
    raise ValueError(f"no Graph body for {type(content).__name__}")


def _interactive_content(
    content: ButtonsContent | ListContent | CtaUrlContent, media_id: str | None
) -> dict[str, Any]:
    if isinstance(content, ListContent):
        text_header = (
            {"type": "text", "text": content.header} if content.header is not None else None
        )
        listing = _interactive("list", text_header, content.body, content.footer)
        listing["action"] = {"button": content.button, "sections": _sections(content)}
        return listing
    header = _header_object(content.header, media_id) if content.header is not None else None
    if isinstance(content, ButtonsContent):
        interactive = _interactive("button", header, content.body, content.footer)
        interactive["action"] = {
            "buttons": [
                {"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in content.buttons
            ]
        }
        return interactive
    cta = _interactive("cta_url", header, content.body, content.footer)
    cta["action"] = {
        "name": "cta_url",
        "parameters": {"display_text": content.display_text, "url": content.url},
    }
    return cta


def _sections(content: ListContent) -> list[dict[str, Any]]:
    sections = []
    for section in content.sections:
        rows = []
        for row in section.rows:
            item = {"id": row.id, "title": row.title}
            if row.description is not None:
                item["description"] = row.description
            rows.append(item)
        entry: dict[str, Any] = {"rows": rows}
        if section.title is not None:
            entry["title"] = section.title
        sections.append(entry)
    return sections


def _location(content: LocationContent) -> dict[str, Any]:
    location: dict[str, Any] = {"latitude": content.latitude, "longitude": content.longitude}
    if content.name is not None:
        location["name"] = content.name
    if content.address is not None:
        location["address"] = content.address
    return location


def _media_object(media: MediaContent, kind: str, media_id: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if media.media_id:
        item["id"] = media.media_id
    elif media.link:
        item["link"] = media.link
    else:
        if media_id is None:
            raise ValueError(f"{kind} must be uploaded before the body is built")
        item["id"] = media_id
    if media.caption is not None and kind in CAPTIONED:
        item["caption"] = media.caption
    if media.filename is not None and kind == "document":
        item["filename"] = media.filename
    return item


def _interactive(
    kind: str, header: dict[str, Any] | None, text: str, footer: str | None
) -> dict[str, Any]:
    """An interactive message's frame: type, optional header, body and optional footer."""
    interactive: dict[str, Any] = {"type": kind}
    if header is not None:
        interactive["header"] = header
    interactive["body"] = {"text": text}
    if footer is not None:
        interactive["footer"] = {"text": footer}
    return interactive


def _header_object(header: Header, media_id: str | None) -> dict[str, Any]:
    if header.type == "text" or header.media is None:
        return {"type": "text", "text": header.text or ""}
    return {"type": header.type, header.type: _media_object(header.media, header.type, media_id)}
