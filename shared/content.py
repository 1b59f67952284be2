"""What a send command carries: one model per kind of WhatsApp message (the ``kind``
discriminates), as the sender turns them into Graph API bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from shared.event_base import Model


class TextContent(Model):
    kind: Literal["text"] = "text"
    body: str
    preview_url: bool = False


class MediaContent(Model):
    kind: Literal["image", "video", "audio", "document", "sticker"]
    media_id: str | None = None
    link: str | None = None
    # Upload first: from a URL the sender downloads, or from bytes (base64) in the command.
    upload_url: str | None = None
    upload_base64: str | None = None
    # Copy first: the id of media a WhatsApp user sent the business (``InboundMessage.media.id``).
    # The sender asks Meta for its URL (``GET /<id>``), downloads it with the access token,
    # uploads it again and sends the new id, so the message does not depend on the inbound id
    # (which expires after 7 days). Exactly one of media_id, link, upload_url, upload_base64
    # and copy_from_media_id is given.
    copy_from_media_id: str | None = None
    mime_type: str | None = None  # for an upload; for a copy, overrides what Meta reports
    caption: str | None = None
    filename: str | None = None


class TemplateContent(Model):
    kind: Literal["template"] = "template"
    name: str
    language: str = "es_AR"
    # Meta's component objects as-is: header/body/button with their parameters.
    components: list[dict[str, Any]] = Field(default_factory=list)


class ReplyButton(Model):
    id: str
    title: str


class Header(Model):
    type: Literal["text", "image", "video", "document"] = "text"
    text: str | None = None
    media: MediaContent | None = None


class ButtonsContent(Model):
    kind: Literal["buttons"] = "buttons"
    body: str
    buttons: list[ReplyButton]
    header: Header | None = None
    footer: str | None = None


class ListRow(Model):
    id: str
    title: str
    description: str | None = None


class ListSection(Model):
    title: str | None = None
    rows: list[ListRow]


class ListContent(Model):
    kind: Literal["list"] = "list"
    body: str
    button: str
    sections: list[ListSection]
    header: str | None = None
    footer: str | None = None


class CtaUrlContent(Model):
    kind: Literal["cta_url"] = "cta_url"
    body: str
    display_text: str
    url: str
    header: Header | None = None
    footer: str | None = None


class LocationContent(Model):
    kind: Literal["location"] = "location"
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class ContactsContent(Model):
    kind: Literal["contacts"] = "contacts"
    contacts: list[dict[str, Any]]


class ReactionContent(Model):
    kind: Literal["reaction"] = "reaction"
    message_id: str
    emoji: str  # "" removes the reaction


class MarkReadContent(Model):
    kind: Literal["mark_read"] = "mark_read"
    message_id: str
    typing: bool = False  # also show the typing indicator (up to 25 s)


OutboundContent = Annotated[
    TextContent
    | MediaContent
    | TemplateContent
    | ButtonsContent
    | ListContent
    | CtaUrlContent
    | LocationContent
    | ContactsContent
    | ReactionContent
    | MarkReadContent,
    Field(discriminator="kind"),
]
