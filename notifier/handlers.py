"""The notifier's handler table: one entry per event type it consumes, each to its use case
(``reports``: the operators' mail; ``alerts``: Meta's signals that need the operators;
``company``: a profile's mail; ``feedback``: SES's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from notifier import alerts, company, feedback, reports
from notifier.deps import Deps
from notifier.domain import ErrorInfo, from_webhook_errors
from shared.bus import Delivery
from shared.events import (
    EmailBounced,
    EmailComplained,
    EmailDelivered,
    EmailQueued,
    ErrorReported,
    Event,
    HandoffClosed,
    HandoffUnattended,
    WebhookErrors,
)
from shared.handlers import HandlerTable
from shared.signals import (
    AccountUpdate,
    PhoneNumberQuality,
    TemplateCategoryUpdate,
    TemplateStatusUpdate,
)

E = TypeVar("E", bound=Event)
Handler = Callable[[Deps, E, Delivery], Awaitable[None]]


def use_case(run: Callable[[Deps, E], Awaitable[None]]) -> Handler[E]:
    """A use case that needs the event alone (not how it was delivered) as a handler."""

    async def handler(deps: Deps, event: E, delivery: Delivery) -> None:
        await run(deps, event)

    handler.__name__ = run.__name__
    return handler


async def on_error_reported(deps: Deps, event: ErrorReported) -> None:
    await reports.on_error(deps, ErrorInfo.from_event(event))


async def on_webhook_errors(deps: Deps, event: WebhookErrors) -> None:
    for info in from_webhook_errors(event):
        await reports.on_error(deps, info)


TABLE: HandlerTable[Deps] = HandlerTable("notifier")
TABLE.on(ErrorReported, use_case(on_error_reported))
TABLE.on(WebhookErrors, use_case(on_webhook_errors))
TABLE.on(EmailQueued, use_case(reports.on_queued))
TABLE.on(AccountUpdate, use_case(alerts.on_account_update))
TABLE.on(PhoneNumberQuality, use_case(alerts.on_phone_number_quality))
TABLE.on(TemplateStatusUpdate, use_case(alerts.on_template_status))
TABLE.on(TemplateCategoryUpdate, use_case(alerts.on_template_category))
TABLE.on(HandoffUnattended, use_case(company.on_unattended))
TABLE.on(HandoffClosed, use_case(company.on_closed))
TABLE.on(EmailBounced, use_case(feedback.on_bounce))
TABLE.on(EmailComplained, use_case(feedback.on_complaint))
TABLE.on(EmailDelivered, use_case(feedback.on_delivered))
