"""The sender's two handler tables and what its queues are.

``<prefix>.sender`` takes send commands (paced: a command may wait for its slot, its customer
or its number's circuit); ``<prefix>.sender-status`` takes Meta's status webhooks and what Meta
says of templates, customers and the account, so that they never wait behind paced sends. Each
entry hands the event to its use case (``sender.sending``, ``sender.statuses``,
``sender.signals``).
"""

from __future__ import annotations

from sender import signals
from sender.deps import Deps
from sender.recipients import normalise_recipient
from sender.sending import handle_send
from sender.settings import Settings
from sender.statuses import handle_status
from shared.bus import Delivery, QueueSpec
from shared.events import MessageStatus, SendMessage
from shared.handlers import HandlerTable, Subscription
from shared.signals import (
    AccountUpdate,
    IdentityChanged,
    PreferenceChanged,
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
)

STATUS_RETRY_TIERS_MS = (500, 2_000, 10_000)
# The validity period, not a count, decides when a message gives up.
SEND_MAX_ATTEMPTS = 1_000_000_000
# A status that races its message's log row is retried for a while (bounded by
# SENDER_STATUS_ORPHAN_SECONDS in the handler, not by a count).
STATUS_MAX_ATTEMPTS = 1_000


async def on_send(deps: Deps, command: SendMessage, delivery: Delivery) -> None:
    await handle_send(deps, command, delivery.attempt)


async def on_status(deps: Deps, status: MessageStatus, delivery: Delivery) -> None:
    await handle_status(deps, status, delivery.attempt)


def conversation_key(deps: Deps, command: SendMessage) -> str:
    """One conversation's messages go out in order (within a replica): the number and the
    customer, whichever of their identifiers the command names."""
    try:
        to = normalise_recipient(command.to)
    except ValueError:
        to = command.to  # refused by the handler: no order to keep
    return f"{command.phone_number_id or ''}:{deps.customers.key(to)}"


SENDS: HandlerTable[Deps] = HandlerTable("sender")
SENDS.on(SendMessage, on_send, deps_key=conversation_key)

STATUSES: HandlerTable[Deps] = HandlerTable("sender-status")
STATUSES.on(MessageStatus, on_status)
STATUSES.on(TemplateStatusUpdate, signals.on_template_status)
STATUSES.on(TemplateQualityUpdate, signals.on_template_quality)
STATUSES.on(TemplateCategoryUpdate, signals.on_template_category)
STATUSES.on(PreferenceChanged, signals.on_preference)
STATUSES.on(IdentityChanged, signals.on_identity)
STATUSES.on(AccountUpdate, signals.on_account)


def _status_tiers(settings: Settings) -> tuple[int, ...]:
    tiers = tuple(sorted({min(t, 10_000) for t in settings.SENDER_RETRY_TIERS_MS[:4]}))
    return tiers or STATUS_RETRY_TIERS_MS


def send_queue_spec(settings: Settings) -> QueueSpec:
    return SENDS.spec(retry_tiers_ms=settings.SENDER_RETRY_TIERS_MS)


def status_queue_spec(settings: Settings) -> QueueSpec:
    return STATUSES.spec(retry_tiers_ms=_status_tiers(settings))


def subscriptions(deps: Deps, settings: Settings) -> list[Subscription[Deps]]:
    """The two tables bound to the dependencies, statuses first (a send may wait for them)."""
    return [
        STATUSES.bind(
            deps,
            concurrency=settings.SENDER_STATUS_CONCURRENCY,
            retry_tiers_ms=_status_tiers(settings),
            max_attempts=STATUS_MAX_ATTEMPTS,
        ),
        SENDS.bind(
            deps,
            concurrency=settings.SENDER_CONCURRENCY,
            retry_tiers_ms=settings.SENDER_RETRY_TIERS_MS,
            max_attempts=SEND_MAX_ATTEMPTS,
        ),
    ]
