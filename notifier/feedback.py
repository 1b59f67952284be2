"""What SES says of the mail sent (through the gateway's ``/webhook/ses``): bounces and
complaints put addresses on the suppression list; deliveries are recorded."""

from __future__ import annotations

import logging

from notifier.deps import Deps
from shared.events import EmailBounced, EmailComplained, EmailDelivered
from shared.logs import fields

log = logging.getLogger("mensajero.notifier")


async def on_bounce(deps: Deps, event: EmailBounced) -> None:
    if event.bounce_type != "Permanent":
        log.info(
            "non-permanent bounce; address kept",
            extra=fields(
                bounce_type=event.bounce_type,
                bounce_subtype=event.bounce_subtype,
                to=",".join(event.addresses),
                ses_message_id=event.ses_message_id,
            ),
        )
        return
    await _suppress(
        deps, event.event_id, event.addresses, "bounce", event.bounce_subtype, event.ses_message_id
    )


async def on_complaint(deps: Deps, event: EmailComplained) -> None:
    await _suppress(
        deps,
        event.event_id,
        event.addresses,
        "complaint",
        event.feedback_type,
        event.ses_message_id,
    )


async def _suppress(
    deps: Deps,
    event_id: str,
    addresses: list[str],
    reason: str,
    detail: str | None,
    ses_message_id: str | None,
) -> None:
    """Put addresses on the suppression list; count and log the ones new to it."""
    async with deps.repo() as repo:
        added = await repo.suppress(
            addresses, reason=reason, detail=detail, source_event_id=event_id
        )
    for address in added:
        deps.metrics.addresses_suppressed.labels(reason=reason).inc()
        log.warning(
            f"address suppressed after a {reason}",
            extra=fields(address=address, detail=detail, ses_message_id=ses_message_id),
        )


async def on_delivered(deps: Deps, event: EmailDelivered) -> None:
    if not event.ses_message_id:
        return
    async with deps.repo() as repo:
        ours = await repo.mark_delivered(event.ses_message_id, at=event.occurred_at)
    if ours:
        log.info(
            "email delivered",
            extra=fields(
                provider="ses", message_id=event.ses_message_id, to=",".join(event.addresses)
            ),
        )
