"""The envelope every event carries, and the value types that events share.

Split out of :mod:`shared.events` so that the catalog's modules (``shared.events``,
``shared.signals``) build on it without importing each other. Import from ``shared.events``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.phone import maybe_e164

_NAMESPACE = uuid.UUID("6f1c7a52-4d0e-4a43-9b55-6d656e73616a")
_NAMESPACE_BYTES = _NAMESPACE.bytes
# RFC 4122 variant bits (10xx) over the first hex digit of the fourth group.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def stable_id(*parts: str) -> str:
    """A deterministic event id: the same parts always give the same id.

    ``str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))``, computed straight from SHA-1: uuid5
    builds an int and a UUID object per call, a few microseconds on every event the gateway
    parses. tests/shared/test_events.py checks both give the same strings.
    """
    # Strict UTF-8 like uuid5's: a lone surrogate raises UnicodeEncodeError in both.
    digest = hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode()).hexdigest()
    return (
        f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-"
        f"{_VARIANT[digest[16]]}{digest[17:20]}-{digest[20:32]}"
    )


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Event(Model):
    """The envelope. Subclasses set ``type`` with a Literal default and bump ``version``."""

    TYPE: ClassVar[str] = ""

    event_id: str = Field(default_factory=new_id)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str | None = None

    @property
    def routing_key(self) -> str:
        return self.type

    def partition_key(self) -> str | None:
        """The key this event is ordered by: its consumers handle the events of one key one
        after another, and a partitioned queue (``shared.bus``) hashes it to the same partition
        (published in the ``x-mensajero-key`` header). None: it needs no order."""
        return None


# --------------------------------------------------------------------------- Meta, inbound


class MetaError(Model):
    """An error object as Meta sends it, in a send answer or a webhook."""

    code: int
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None


class Identity(Model):
    """Who a WhatsApp user is, by whatever Meta sent: ``phone`` is E.164 with ``+`` (absent when
    the user hides it behind a username), ``user_id`` the business-scoped user id (BSUID, e.g.
    ``AR.13491208655302741918``), ``parent_user_id`` the one across linked portfolios."""

    phone: str | None = None
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    name: str | None = None
    username: str | None = None

    @property
    def key(self) -> str:
        """A stable key for the person: the phone when known, else the business-scoped id."""
        return self.phone or self.user_id or self.wa_id or "unknown"

    @property
    def ordering_key(self) -> str:
        """The key one person's events are ordered by: the BSUID (a username or a hidden phone
        leaves it as it is), else the E.164 phone, else the parent BSUID."""
        # In order, each computed only when the ones before are missing (every publish asks).
        return self.user_id or maybe_e164(self.phone) or self.parent_user_id or self.key

    @property
    def handle(self) -> str | None:
        """How a person at the business recognises the user besides their name: the phone, or
        where Meta hides it, the username (``@ana``), else the BSUID (or parent BSUID)."""
        if self.phone:
            return self.phone
        if self.username:
            return self.username if self.username.startswith("@") else f"@{self.username}"
        return self.user_id or self.parent_user_id or self.wa_id


class MessageContext(Model):
    """What an inbound message replies to or where it came from."""

    message_id: str | None = None  # the wamid it quotes (a reply, a tapped button)
    from_phone: str | None = None
    forwarded: bool = False
    frequently_forwarded: bool = False
    referred_product: dict[str, Any] | None = None


class Media(Model):
    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool | None = None
    animated: bool | None = None
    url: str | None = None


class Location(Model):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class Reply(Model):
    """A tap: a reply button, a list row, a template quick reply or a Flow answer."""

    kind: Literal["button_reply", "list_reply", "template_button", "nfm_reply"]
    id: str | None = None  # button/row id, or the template button's payload
    title: str | None = None
    description: str | None = None
    response_json: str | None = None


class Reaction(Model):
    message_id: str
    emoji: str | None = None  # None: the reaction was removed


class CallPermission(Model):
    """A user's answer to the business's request to call them (``call_permission_reply``)."""

    response: str  # accept, reject
    expires_at: datetime | None = None
    response_source: str | None = None  # user_action, automatic
    permanent: bool | None = None
