"""Message content both ways, pure: what an agent's message becomes for the customer, media
copies, and the transcript's one-line descriptions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from shared.events import (
    InboundMessage,
    Location,
    LocationContent,
    Media,
    MediaContent,
    OutboundContent,
    Reaction,
    ReactionContent,
    TextContent,
)
from shared.meta_limits import CAPTIONED, TEXT_BODY_MAX

MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")


class Message(Protocol):
    """What a customer's message and a business app's echo (``MessageEcho``) share."""

    @property
    def message_type(self) -> str: ...
    @property
    def text(self) -> str | None: ...
    @property
    def media(self) -> Media | None: ...
    @property
    def location(self) -> Location | None: ...
    @property
    def reaction(self) -> Reaction | None: ...


def aware(moment: datetime) -> datetime:
    """A time Meta sent, with a time zone (UTC when it came without)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sent_at(msg: InboundMessage) -> datetime:
    """When the person wrote ``msg`` (what opens their 24-hour window), with a time zone."""
    return aware(msg.timestamp)


def copy_of(media: Media, kind: str, caption: str | None) -> MediaContent:
    """A relay of media someone sent: the sender downloads it from Meta and uploads it again
    (``copy_from_media_id``), so the relay never re-sends an inbound id (those expire)."""
    return MediaContent(
        kind=kind,
        copy_from_media_id=media.id,
        caption=caption if kind in CAPTIONED else None,
        filename=media.filename if kind == "document" else None,
    )


def location_of(msg: InboundMessage) -> LocationContent | None:
    where = msg.location
    if where is None:
        return None
    return LocationContent(
        latitude=where.latitude, longitude=where.longitude, name=where.name, address=where.address
    )


def agent_content(msg: InboundMessage, text: str) -> OutboundContent | None:
    """What an agent's message (not a reaction) sends the customer, as the business; None when
    it carries nothing that can be relayed."""
    location = location_of(msg)
    if location is not None:
        return location
    if msg.media is not None and msg.media.id and msg.message_type in MEDIA_KINDS:
        caption = text or None if msg.message_type in CAPTIONED else None
        return copy_of(msg.media, msg.message_type, caption)
    if text:
        return TextContent(body=text[:TEXT_BODY_MAX])
    return None


def describe(msg: Message) -> str:
    """One transcript line for a message (a customer's, or an echo of the business app's)."""
    if msg.message_type == "revoke":
        return "[mensaje borrado]"
    if msg.message_type == "edit":
        return f"[editado] {msg.text or ''}".strip()
    if msg.reaction is not None:
        return f"[reacción {msg.reaction.emoji or 'quitada'}]"
    if msg.location is not None:
        where = msg.location.name or msg.location.address or ""
        return f"[ubicación {where} {msg.location.latitude},{msg.location.longitude}]".strip()
    if msg.media is not None and msg.message_type in MEDIA_KINDS:
        return f"[{msg.message_type}] {msg.text or ''}".strip()
    if msg.text:
        return msg.text
    return f"[{msg.message_type}]"


def describe_content(content: OutboundContent) -> str:
    """One transcript line for what an agent sent."""
    if isinstance(content, TextContent):
        return content.body
    if isinstance(content, MediaContent):
        return f"[{content.kind}] {content.caption or ''}".strip()
    if isinstance(content, LocationContent):
        return f"[ubicación {content.latitude},{content.longitude}]"
    if isinstance(content, ReactionContent):
        return f"[reacción {content.emoji}]"
    return f"[{content.kind}]"
