"""The event catalog: every event and command that travels on the bus.

Each model carries the common envelope (``event_id``, ``type``, ``version``, ``occurred_at``,
``correlation_id``). The routing key is the type. Producers that can be re-run (a webhook Meta
delivers twice, a handler redelivered by the broker) derive ``event_id`` deterministically with
:func:`stable_id`, so consumers deduplicate on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field

from shared.content import (
    ButtonsContent,
    ContactsContent,
    CtaUrlContent,
    Header,
    ListContent,
    ListRow,
    ListSection,
    LocationContent,
    MarkReadContent,
    MediaContent,
    OutboundContent,
    ReactionContent,
    ReplyButton,
    TemplateContent,
    TextContent,
)
from shared.event_base import (
    CallPermission,
    Event,
    Identity,
    Location,
    Media,
    MessageContext,
    MetaError,
    Model,
    Reaction,
    Reply,
    new_id,
    stable_id,
    utcnow,
)
from shared.signals import SIGNALS, TemplateStatusUpdate

__all__ = [
    "ButtonsContent",
    "CallPermission",
    "ContactsContent",
    "CtaUrlContent",
    "Event",
    "Header",
    "Identity",
    "ListContent",
    "ListRow",
    "ListSection",
    "Location",
    "LocationContent",
    "MarkReadContent",
    "Media",
    "MediaContent",
    "MessageContext",
    "MetaError",
    "Model",
    "OutboundContent",
    "Reaction",
    "ReactionContent",
    "Reply",
    "ReplyButton",
    "TemplateContent",
    "TemplateStatusUpdate",
    "TextContent",
    "new_id",
    "stable_id",
    "utcnow",
]

# --------------------------------------------------------------------------- Meta, inbound


class InboundMessage(Event):
    """A message a user sent to the business (one per ``messages[]`` item)."""

    TYPE: ClassVar[str] = "whatsapp.message.received"
    type: Literal["whatsapp.message.received"] = "whatsapp.message.received"

    phone_number_id: str
    display_phone_number: str | None = None
    waba_id: str | None = None
    wamid: str
    timestamp: datetime
    message_type: str  # Meta's type; "unsupported" for one we do not know
    sender: Identity
    text: str | None = None  # text body, media caption, reply title, edited text
    media: Media | None = None
    location: Location | None = None
    reply: Reply | None = None
    reaction: Reaction | None = None
    call_permission: CallPermission | None = None  # an answer to a call permission request
    contacts: list[dict[str, Any]] | None = None
    order: dict[str, Any] | None = None
    system: dict[str, Any] | None = None
    original_message_id: str | None = None  # for edit and revoke
    context: MessageContext | None = None
    referral: dict[str, Any] | None = None
    errors: list[MetaError] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict)  # the message object as Meta sent it


StatusName = Literal["sent", "delivered", "read", "failed", "played", "deleted", "warning"]


class MessageStatus(Event):
    """A status update for a message the business sent (one per ``statuses[]`` item)."""

    TYPE: ClassVar[str] = "whatsapp.status.received"
    type: Literal["whatsapp.status.received"] = "whatsapp.status.received"

    phone_number_id: str
    wamid: str
    status: str
    timestamp: datetime
    recipient: Identity
    errors: list[MetaError] = Field(default_factory=list)
    pricing: dict[str, Any] | None = None
    conversation: dict[str, Any] | None = None
    biz_opaque_callback_data: str | None = None  # the sending caller's own data
    # The sender's command and try this status is about (see shared.send_ref), when it sent it.
    command_id: str | None = None
    send_attempt: int | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class WebhookErrors(Event):
    """Value-level ``errors[]`` of a webhook (a problem Meta reports outside any message)."""

    TYPE: ClassVar[str] = "whatsapp.errors.received"
    type: Literal["whatsapp.errors.received"] = "whatsapp.errors.received"

    phone_number_id: str | None = None
    errors: list[MetaError]


# --------------------------------------------------------------------------- SES, inbound


class EmailBounced(Event):
    TYPE: ClassVar[str] = "ses.bounce"
    type: Literal["ses.bounce"] = "ses.bounce"

    addresses: list[str]
    bounce_type: str  # Permanent, Transient, Undetermined
    bounce_subtype: str | None = None
    ses_message_id: str | None = None
    feedback_id: str | None = None


class EmailComplained(Event):
    TYPE: ClassVar[str] = "ses.complaint"
    type: Literal["ses.complaint"] = "ses.complaint"

    addresses: list[str]
    feedback_type: str | None = None
    ses_message_id: str | None = None
    feedback_id: str | None = None


class EmailDelivered(Event):
    TYPE: ClassVar[str] = "ses.delivery"
    type: Literal["ses.delivery"] = "ses.delivery"

    addresses: list[str]
    ses_message_id: str | None = None


# --------------------------------------------------------------------------- send commands


class SendMessage(Event):
    """A command to the sender: send one message to one WhatsApp user.

    ``event_id`` is the idempotency key: the same command published twice sends once.
    """

    TYPE: ClassVar[str] = "whatsapp.send.requested"
    type: Literal["whatsapp.send.requested"] = "whatsapp.send.requested"

    # E.164, bare digits, Twilio's "whatsapp:+549...", or the customer's business-scoped user
    # id (BSUID, "AR.1349..."; or a parent BSUID, "AR.ENT.1181..."), for a customer who hides
    # their phone: the sender then puts it in Meta's ``recipient`` instead of ``to``.
    to: str
    # The same customer's phone, when known and ``to`` is a BSUID: used when Meta refuses the
    # BSUID for this kind of message (131062, e.g. authentication templates).
    to_phone: str | None = None
    content: OutboundContent
    phone_number_id: str | None = None  # None: the sender's default number
    reply_to: str | None = None  # wamid to quote (Meta's ``context.message_id``)
    fallback_template: TemplateContent | None = None  # used outside the 24 h window
    biz_opaque_callback_data: str | None = None
    valid_until: datetime | None = None  # give up after this (default: sender's validity)
    origin: str | None = None  # the service or integration that asked


class MessageSent(Event):
    """Meta accepted a send command: the command's id now maps to a wamid."""

    TYPE: ClassVar[str] = "whatsapp.send.accepted"
    type: Literal["whatsapp.send.accepted"] = "whatsapp.send.accepted"

    command_id: str
    wamid: str
    to: str
    phone_number_id: str
    kind: str
    used_fallback_template: bool = False
    biz_opaque_callback_data: str | None = None


# What a failed send means for whoever asked for it, in words every service understands (the
# sender maps Meta's error codes to these in sender/policy.py; no other service reads them):
# window_closed: outside the recipient's 24-hour window (Meta 131047), and no fallback template
#   took its place; reach them with a template first.
# temporary: Meta's answer was temporary (throttled, unavailable, withheld for a day, ...), but
#   the command's validity ended before a try went through.
# rejected: Meta refused it for good (the message, the recipient or the account).
# not_sent: Meta never answered: the sender refused an invalid command, or the validity ended
#   before any try reached Meta.
# template_unusable: the template is paused, disabled or rejected at Meta (refused before Meta
#   was asked, or Meta's 132001/132015/132016): send another one.
# marketing_opted_out: a marketing template to a customer who stopped marketing messages (their
#   preference, or Meta's 131050); it goes again once they resume.
# recipient_unsupported: Meta takes no business-scoped user id for this kind of message (131062,
#   e.g. authentication templates) and the command named no phone (``to_phone``).
FailureReason = Literal[
    "window_closed",
    "temporary",
    "rejected",
    "not_sent",
    "template_unusable",
    "marketing_opted_out",
    "recipient_unsupported",
]


class MessageFailed(Event):
    """A send command ended without a message at the customer."""

    TYPE: ClassVar[str] = "whatsapp.send.failed"
    type: Literal["whatsapp.send.failed"] = "whatsapp.send.failed"

    command_id: str
    to: str
    phone_number_id: str | None = None
    kind: str | None = None
    reason: str  # for people: what happened, with Meta's code and title
    # For services: what it means (None: published by a sender from before reason codes).
    reason_code: FailureReason | None = None
    error: MetaError | None = None
    wamid: str | None = None  # set when Meta accepted it and failed it later


# --------------------------------------------------------------------------- handoff


class TranscriptLine(Model):
    at: datetime
    author: Literal["customer", "agent", "bot", "system"]
    text: str


class HandoffRequested(Event):
    TYPE: ClassVar[str] = "handoff.requested"
    type: Literal["handoff.requested"] = "handoff.requested"

    case_code: str
    phone_number_id: str
    customer: Identity
    trigger: str  # button, phrase, command
    profile_id: str | None = None


class HandoffClaimed(Event):
    TYPE: ClassVar[str] = "handoff.claimed"
    type: Literal["handoff.claimed"] = "handoff.claimed"

    case_code: str
    customer: Identity
    agent_phone: str
    wait_seconds: float
    profile_id: str | None = None


class HandoffUnattended(Event):
    """Nobody could take a customer's request: no agent, after hours, or timed out."""

    TYPE: ClassVar[str] = "handoff.unattended"
    type: Literal["handoff.unattended"] = "handoff.unattended"

    case_code: str
    customer: Identity
    reason: Literal["no_agent", "after_hours", "timeout"]
    profile_id: str | None = None
    last_messages: list[TranscriptLine] = Field(default_factory=list)


class CaseHandler(Model):
    """An agent who handled a case: from their claim (or the transfer to them) to the next
    transfer (or the close)."""

    agent_phone: str
    agent_name: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class HandoffClosed(Event):
    TYPE: ClassVar[str] = "handoff.closed"
    type: Literal["handoff.closed"] = "handoff.closed"

    case_code: str
    customer: Identity
    agent_phone: str | None = None
    end_reason: Literal["agent", "customer", "timeout", "no_agent", "after_hours", "idle"]
    profile_id: str | None = None
    transcript: list[TranscriptLine] = Field(default_factory=list)
    # Who handled it, in order (a transfer hands it to the next one).
    handlers: list[CaseHandler] = Field(default_factory=list)
    # The customer's answer to the rating asked at the close (1 to 3; None: not answered), and
    # the button they tapped.
    rating: int | None = None
    rating_label: str | None = None


class HandoffRequestCommand(Event):
    """Integrations ask for a human on a customer's behalf over the bus."""

    TYPE: ClassVar[str] = "handoff.request"
    type: Literal["handoff.request"] = "handoff.request"

    phone_number_id: str | None = None
    # The customer's phone, or their BSUID (``customer_user_id``) for one who hides it; at
    # least one of the two (a command with neither is ignored, and logged).
    customer_phone: str | None = None
    customer_user_id: str | None = None
    reason: str | None = None


class BotMessage(Event):
    """An inbound customer message handed to an external bot (when one is configured)."""

    TYPE: ClassVar[str] = "bot.message"
    type: Literal["bot.message"] = "bot.message"

    message: InboundMessage
    profile_id: str | None = None


# --------------------------------------------------------------------------- errors


class ErrorReported(Event):
    """Something an operator should know about; the notifier emails it to ERROR_LOG_EMAIL."""

    TYPE: ClassVar[str] = "error.reported"
    type: Literal["error.reported"] = "error.reported"

    service: str
    error_type: str
    message: str
    meta_code: int | None = None
    phone_number_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Identical errors share a fingerprint (used to fold them into one digest)."""
        return stable_id(self.service, self.error_type, str(self.meta_code), self.message)


class EmailQueued(Event):
    """The notifier's own command: send the email it recorded under ``key`` (digest mails).

    Sending through the bus gives these mails the same retries and dead-lettering as the rest.
    """

    TYPE: ClassVar[str] = "notifier.email.queued"
    type: Literal["notifier.email.queued"] = "notifier.email.queued"

    key: str
    kind: str


ALL_EVENTS: tuple[type[Event], ...] = (
    InboundMessage,
    MessageStatus,
    WebhookErrors,
    EmailBounced,
    EmailComplained,
    EmailDelivered,
    SendMessage,
    MessageSent,
    MessageFailed,
    HandoffRequested,
    HandoffClaimed,
    HandoffUnattended,
    HandoffClosed,
    HandoffRequestCommand,
    BotMessage,
    ErrorReported,
    EmailQueued,
    *SIGNALS,
)

EVENT_TYPES: dict[str, type[Event]] = {cls.TYPE: cls for cls in ALL_EVENTS}

E = TypeVar("E", bound=Event)


class UnknownEventType(ValueError):
    pass


def parse_event(event_type: str, body: bytes | str) -> Event:
    """Decode a bus message body into its model (raises ``UnknownEventType`` or ValidationError)."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise UnknownEventType(event_type)
    return cls.model_validate_json(body)
