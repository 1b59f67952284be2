"""What Meta tells the business besides its customers' messages and their statuses.

One event per item of the webhook fields a business subscribes to since 2026 (see the Cloud API
notes, "2026"): the WhatsApp Business app on the same number (coexistence), marketing
preferences, the account and its numbers, templates, calls, customers' identity changes, and
any field no model covers yet. Where a signal means something a business must act on (an account
restricted, a number's quality dropping, a template no longer sendable), the rule that says so
is a property here, defined once for every service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from shared.event_base import Event, Identity, Location, Media, MetaError, Model, Reaction

# --------------------------------------------------------------------------- coexistence


class MessageEcho(Event):
    """A message a person at the business sent from the WhatsApp Business app on the same number
    (``smb_message_echoes``): the customer got it, and Mensajero did not send it."""

    TYPE: ClassVar[str] = "whatsapp.echo.received"
    type: Literal["whatsapp.echo.received"] = "whatsapp.echo.received"

    phone_number_id: str
    display_phone_number: str | None = None
    waba_id: str | None = None
    wamid: str
    timestamp: datetime
    message_type: str
    customer: Identity  # who it went to
    text: str | None = None
    media: Media | None = None
    location: Location | None = None
    reaction: Reaction | None = None
    original_message_id: str | None = None  # for edit and revoke
    raw: dict[str, Any] = Field(default_factory=dict)

    def partition_key(self) -> str:
        return self.customer.ordering_key


class HistoryMessage(Model):
    wamid: str
    from_business: bool
    timestamp: datetime | None = None
    message_type: str
    text: str | None = None
    status: str | None = None  # history_context.status


class HistoryThread(Model):
    customer: Identity
    messages: list[HistoryMessage] = Field(default_factory=list)


class HistoryChunk(Event):
    """Past chats of the WhatsApp Business app, sent once at onboarding, in chunks (``history``);
    ``errors`` when the business declined to share them."""

    TYPE: ClassVar[str] = "whatsapp.history.received"
    type: Literal["whatsapp.history.received"] = "whatsapp.history.received"

    phone_number_id: str
    waba_id: str | None = None
    phase: int | None = None
    chunk_order: int | None = None
    progress: int | None = None
    threads: list[HistoryThread] = Field(default_factory=list)
    errors: list[MetaError] = Field(default_factory=list)


class SyncedContact(Model):
    action: str  # add, remove
    contact: Identity
    full_name: str | None = None
    first_name: str | None = None
    timestamp: datetime | None = None


class ContactsSynced(Event):
    """Contacts added to or removed from the business app's address book
    (``smb_app_state_sync``)."""

    TYPE: ClassVar[str] = "whatsapp.contacts.synced"
    type: Literal["whatsapp.contacts.synced"] = "whatsapp.contacts.synced"

    phone_number_id: str
    waba_id: str | None = None
    contacts: list[SyncedContact] = Field(default_factory=list)


# --------------------------------------------------------------------------- customers

MARKETING = "marketing_messages"


class PreferenceChanged(Event):
    """A customer stopped, resumed or signed up for a category of messages
    (``user_preferences``; today only marketing)."""

    TYPE: ClassVar[str] = "whatsapp.preference.changed"
    type: Literal["whatsapp.preference.changed"] = "whatsapp.preference.changed"

    phone_number_id: str
    waba_id: str | None = None
    customer: Identity
    category: str  # marketing_messages
    value: str  # stop, resume, signup
    detail: str | None = None
    timestamp: datetime

    @property
    def stops_marketing(self) -> bool:
        return self.category == MARKETING and self.value == "stop"

    @property
    def allows_marketing(self) -> bool:
        return self.category == MARKETING and self.value in ("resume", "signup")


IdentityChange = Literal[
    "user_changed_number", "user_changed_user_id", "customer_identity_changed", "user_id_update"
]


class IdentityChanged(Event):
    """A customer's identifiers changed: a new phone number (which brings a new BSUID), a new
    BSUID, or a new identity on the same phone. ``previous`` and ``current`` are the same person:
    an open conversation carries on under the new identifiers."""

    TYPE: ClassVar[str] = "whatsapp.identity.changed"
    type: Literal["whatsapp.identity.changed"] = "whatsapp.identity.changed"

    phone_number_id: str
    waba_id: str | None = None
    change: IdentityChange
    previous: Identity
    current: Identity
    body: str | None = None  # Meta's text of the system message
    wamid: str | None = None  # of the system message, when it came as one
    timestamp: datetime

    def partition_key(self) -> str:
        # The customer as they were: their earlier messages are ordered under that key.
        return self.previous.ordering_key


# --------------------------------------------------------------------------- account and numbers

AccountState = Literal["restricted", "disabled", "violation", "offboarded", "reinstated"]
# The states in which the business's messages are at risk: operators must act.
ACCOUNT_ALERTS: frozenset[str] = frozenset({"restricted", "disabled", "violation", "offboarded"})


class AccountUpdate(Event):
    """Meta changed something about the WhatsApp Business Account (``account_update``):
    restrictions, violations, a ban or its lifting, partners, pricing tiers, ..."""

    TYPE: ClassVar[str] = "whatsapp.account.updated"
    type: Literal["whatsapp.account.updated"] = "whatsapp.account.updated"

    waba_id: str | None = None
    event: str  # Meta's, e.g. ACCOUNT_RESTRICTION, DISABLED_UPDATE, ACCOUNT_RECONNECTED
    details: dict[str, Any] = Field(default_factory=dict)  # restriction_info, ban_info, ...

    @property
    def state(self) -> AccountState | None:
        """What the event says of the account's standing (None: nothing about it)."""
        event = self.event
        if event == "DISABLED_UPDATE":
            ban = self.details.get("ban_info")
            ban_state = ban.get("waba_ban_state") if isinstance(ban, dict) else None
            if ban_state == "REINSTATE":
                return "reinstated"
            return "disabled"  # DISABLE, SCHEDULE_FOR_DISABLE
        if event == "ACCOUNT_RESTRICTION":
            # An empty restriction list is Meta lifting the restrictions.
            return "restricted" if self.details.get("restriction_info") != [] else "reinstated"
        return {
            "ACCOUNT_DISABLED": "disabled",
            "ACCOUNT_VIOLATION": "violation",
            "ACCOUNT_OFFBOARDED": "offboarded",
            "ACCOUNT_DELETED": "offboarded",
            "ACCOUNT_RECONNECTED": "reinstated",
        }.get(event)  # type: ignore[return-value]

    @property
    def needs_attention(self) -> bool:
        return self.state in ACCOUNT_ALERTS


# Messaging limits, lowest first (Meta's tiers of users a business may start conversations with).
MESSAGING_TIERS = (
    "TIER_50",
    "TIER_250",
    "TIER_1K",
    "TIER_2K",
    "TIER_10K",
    "TIER_100K",
    "TIER_UNLIMITED",
)
QUALITY_DROPS = frozenset({"DOWNGRADE", "FLAGGED"})


class PhoneNumberQuality(Event):
    """A number's quality or messaging limit changed (``phone_number_quality_update``)."""

    TYPE: ClassVar[str] = "whatsapp.phone_number.quality"
    type: Literal["whatsapp.phone_number.quality"] = "whatsapp.phone_number.quality"

    waba_id: str | None = None
    display_phone_number: str | None = None
    event: str  # THROUGHPUT_UPGRADE, ONBOARDING, UPGRADE, DOWNGRADE, FLAGGED, UNFLAGGED
    current_limit: str | None = None
    old_limit: str | None = None
    max_daily_conversations_per_business: str | None = None

    @property
    def dropped(self) -> bool:
        """The number's quality fell, or its messaging limit went down."""
        if self.event in QUALITY_DROPS:
            return True
        old, new = _tier(self.old_limit), _tier(self.current_limit)
        return old is not None and new is not None and new < old


def _tier(limit: str | None) -> int | None:
    return MESSAGING_TIERS.index(limit) if limit in MESSAGING_TIERS else None


class PhoneNumberName(Event):
    """Meta's decision on a number's requested display name (``phone_number_name_update``)."""

    TYPE: ClassVar[str] = "whatsapp.phone_number.name"
    type: Literal["whatsapp.phone_number.name"] = "whatsapp.phone_number.name"

    waba_id: str | None = None
    display_phone_number: str | None = None
    decision: str  # APPROVED, DEFERRED, PENDING, REJECTED
    requested_verified_name: str | None = None
    rejection_reason: str | None = None


# --------------------------------------------------------------------------- templates

# Template statuses under which Meta refuses to send it (132001, 132015, 132016).
UNSENDABLE_TEMPLATE_STATUSES = frozenset(
    {"PAUSED", "DISABLED", "REJECTED", "PENDING_DELETION", "DELETED", "LIMIT_EXCEEDED"}
)
# Of those, the ones an operator must hear about (a template that was in use went away).
TEMPLATE_ALERT_STATUSES = frozenset({"PAUSED", "DISABLED", "REJECTED"})


class _TemplateEvent(Event):
    waba_id: str | None = None
    template_id: str | None = None
    template_name: str | None = None
    language: str | None = None


class TemplateStatusUpdate(_TemplateEvent):
    """A template's review decision or later status (``message_template_status_update``)."""

    TYPE: ClassVar[str] = "whatsapp.template.status"
    type: Literal["whatsapp.template.status"] = "whatsapp.template.status"

    event: str  # APPROVED, REJECTED, PAUSED, DISABLED, PENDING_DELETION, FLAGGED, ...
    reason: str | None = None
    category: str | None = None
    # Meta's info objects as sent: disable_info, other_info (why it was paused), rejection_info.
    details: dict[str, Any] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def sendable(self) -> bool | None:
        """Whether Meta now sends it (None: the event does not say, e.g. FLAGGED)."""
        if self.event == "APPROVED":
            return True
        return False if self.event in UNSENDABLE_TEMPLATE_STATUSES else None

    @property
    def needs_attention(self) -> bool:
        return self.event in TEMPLATE_ALERT_STATUSES


class TemplateQualityUpdate(_TemplateEvent):
    """A template's quality score changed (``message_template_quality_update``)."""

    TYPE: ClassVar[str] = "whatsapp.template.quality"
    type: Literal["whatsapp.template.quality"] = "whatsapp.template.quality"

    previous_quality: str | None = None  # GREEN, YELLOW, RED, UNKNOWN
    new_quality: str


class TemplateCategoryUpdate(_TemplateEvent):
    """Meta reclassified a template (``template_category_update``), which changes what each send
    costs. With ``effective_at`` the change is announced for that time, not yet made."""

    TYPE: ClassVar[str] = "whatsapp.template.category"
    type: Literal["whatsapp.template.category"] = "whatsapp.template.category"

    previous_category: str | None = None
    new_category: str
    effective_at: datetime | None = None

    @property
    def made_marketing(self) -> bool:
        """A utility (or authentication) template moved to marketing: dearer, and refused to
        customers who stopped marketing messages."""
        return (
            self.new_category.upper() == "MARKETING"
            and (self.previous_category or "").upper() != "MARKETING"
        )


class TemplateComponentsUpdate(_TemplateEvent):
    """A template's texts or buttons changed (``message_template_components_update``)."""

    TYPE: ClassVar[str] = "whatsapp.template.components"
    type: Literal["whatsapp.template.components"] = "whatsapp.template.components"

    body: str | None = None  # message_template_element
    header: str | None = None  # message_template_title
    footer: str | None = None
    buttons: list[dict[str, Any]] = Field(default_factory=list)


# --------------------------------------------------------------------------- calls


class CallEvent(Event):
    """A call connecting or ending (``calls``, ``calls[]``)."""

    TYPE: ClassVar[str] = "whatsapp.call.received"
    type: Literal["whatsapp.call.received"] = "whatsapp.call.received"

    phone_number_id: str
    call_id: str
    event: str  # connect, terminate
    direction: str | None = None  # USER_INITIATED, BUSINESS_INITIATED
    customer: Identity
    timestamp: datetime
    session: dict[str, Any] | None = None  # SDP offer or answer (connect)
    status: str | None = None  # terminate: COMPLETED, FAILED, ...
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    biz_opaque_callback_data: str | None = None


class CallStatus(Event):
    """A business-initiated call's progress (``calls``, ``statuses[]`` with type ``call``): not a
    message status."""

    TYPE: ClassVar[str] = "whatsapp.call.status"
    type: Literal["whatsapp.call.status"] = "whatsapp.call.status"

    phone_number_id: str
    call_id: str
    status: str  # RINGING, ACCEPTED, REJECTED
    customer: Identity
    timestamp: datetime
    biz_opaque_callback_data: str | None = None


# --------------------------------------------------------------------------- the rest


class UnhandledField(Event):
    """A webhook field no model covers yet: its name and value as Meta sent them, never dropped."""

    TYPE: ClassVar[str] = "whatsapp.field.received"
    type: Literal["whatsapp.field.received"] = "whatsapp.field.received"

    waba_id: str | None = None
    field: str
    value: Any = None


SIGNALS: tuple[type[Event], ...] = (
    MessageEcho,
    HistoryChunk,
    ContactsSynced,
    PreferenceChanged,
    IdentityChanged,
    AccountUpdate,
    PhoneNumberQuality,
    PhoneNumberName,
    TemplateStatusUpdate,
    TemplateQualityUpdate,
    TemplateCategoryUpdate,
    TemplateComponentsUpdate,
    CallEvent,
    CallStatus,
    UnhandledField,
)
