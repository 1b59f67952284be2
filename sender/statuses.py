"""Status webhooks: ``handle_status`` moves a logged message forward and counts each step once.

Statuses only move forward (``failed`` is final); one that arrives for a wamid the log lacks is
either a send whose answer was lost (it names its command and try, ``shared.send_ref``: the
message is "adopted", counted accepted and not sent again), a wamid the message no longer goes
by (superseded), or not ours (yet: it is looked at again for ``SENDER_STATUS_ORPHAN_SECONDS``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from sender.deps import Deps
from sender.outcomes import alert_event, sent_event_id
from sender.policy import Action, classify, failure_reason, needs_alert
from sender.sending import handle_send
from sender.signals import learn_identity
from sender.store import ACCEPTED_RANK, FAILED_RANK, RANKS, LogRow, StatusChange
from shared.bus import RetryLater
from shared.events import MessageFailed, MessageSent, MessageStatus, SendMessage, stable_id
from shared.logs import fields

log = logging.getLogger("mensajero.sender")

COUNTED = (("sent", RANKS["sent"]), ("delivered", RANKS["delivered"]), ("read", RANKS["read"]))


async def handle_status(deps: Deps, event: MessageStatus, attempt: int = 1) -> None:
    status = event.status
    rank = RANKS.get(status)
    if rank is None or rank <= ACCEPTED_RANK:
        return  # deleted, warning, or something new: nothing to move
    error = event.errors[0] if event.errors else None
    window_closed = error is not None and classify(error.code) is Action.WINDOW
    if status == "failed" and window_closed and await _fall_back_late(deps, event, attempt):
        return
    await learn_identity(deps, event.recipient)
    change = await _apply(deps, event)
    if change == "ignored":
        return
    if change is None:
        age = (deps.clock() - event.occurred_at).total_seconds()
        if age < deps.config.orphan_seconds:
            # It may have raced the log's update with the wamid: look again shortly.
            raise RetryLater("status for a wamid not in the log yet", min(0.25 * attempt, 5.0))
        log.info(
            "status for a message this sender did not log: ignored",
            extra=fields(wamid=event.wamid, status=status),
        )
        return
    if change.changed:
        _count(deps, change, rank, error.code if error is not None else None)
    if change.first_priced and event.pricing is not None:
        _count_price(deps, change.row, event.pricing)
    if status == "failed" and change.row.status == "failed":
        if error is not None and classify(error.code) is Action.MARKETING_STOPPED:
            # Accepted, then refused: the customer stopped marketing messages.
            await deps.store.set_marketing(
                [change.row.recipient], stopped=True, at=deps.clock(), source="meta_131050"
            )
        await _publish_failure(deps, change.row)


async def _apply(deps: Deps, event: MessageStatus) -> StatusChange | Literal["ignored"] | None:
    """The status applied to its message's row (adopting the message first when the log does
    not know the wamid yet); None when it is not (or not yet) ours."""
    error = event.errors[0] if event.errors else None
    priced = event.pricing is not None
    change = await deps.store.apply_status(
        event.wamid, event.status, event.timestamp, error, priced=priced
    )
    if change is not None:
        return change
    placed = await _place(deps, event)
    if placed != "adopted":
        return "ignored" if placed == "ignored" else None
    return await deps.store.apply_status(
        event.wamid, event.status, event.timestamp, error, priced=priced
    )


def _count(deps: Deps, change: StatusChange, rank: int, code: int | None) -> None:
    row, metrics = change.row, deps.metrics
    if rank == FAILED_RANK:
        error_code = str(code) if code is not None else "unknown"
        metrics.failed.labels(row.phone_number_id, row.kind, error_code).inc()
        return
    counters = {"sent": metrics.sent, "delivered": metrics.delivered, "read": metrics.read}
    for name, step in COUNTED:
        if change.old_rank < step <= rank:
            counters[name].labels(row.phone_number_id, row.kind).inc()


def _count_price(deps: Deps, row: LogRow, pricing: dict[str, Any]) -> None:
    """What Meta says the message costs, once per message (Meta repeats it on each status)."""
    category = str(pricing.get("category") or "unknown")
    pricing_type = str(pricing.get("type") or "unknown")
    deps.metrics.billable.labels(row.phone_number_id, category, pricing_type).inc()


async def _publish_failure(deps: Deps, row: LogRow) -> None:
    reason = row.reason or "failed status webhook"
    command_id = row.command_id
    await deps.publish(
        MessageFailed(
            event_id=stable_id(command_id, "failed"),
            correlation_id=command_id,
            command_id=command_id,
            to=row.recipient,
            phone_number_id=row.phone_number_id,
            kind=row.kind,
            reason=reason,
            reason_code=failure_reason(row.error),
            error=row.error,
            wamid=row.wamid,
        )
    )
    if row.error is not None and needs_alert(row.error.code):
        await deps.publish(alert_event(command_id, row.phone_number_id, reason, row.error))


async def _place(deps: Deps, event: MessageStatus) -> Literal["adopted", "ignored", "unknown"]:
    """A status for a wamid the log does not know: whose is it?

    ``adopted``: Meta accepted a send whose answer we never recorded (a timeout, a dropped
    connection, a crash); the wamid is now its message's and the status can be applied.
    ``ignored``: a wamid the message no longer goes by (its fallback template replaced it, or
    Meta took the command twice). ``unknown``: not (yet) ours.
    """
    if await deps.store.superseded(event.wamid):
        log.info(
            "status for a send replaced by another: ignored",
            extra=fields(wamid=event.wamid, status=event.status),
        )
        return "ignored"
    if event.command_id is not None:  # the status names its command and try
        placed = await _adopt_tagged(deps, event, event.command_id)
        if isinstance(placed, str):
            return placed
        row = placed
    elif event.recipient.wa_id or event.recipient.user_id:
        # An untagged status: the recipient's one message with an unknown outcome, if only one.
        wa_id = event.recipient.wa_id
        recipient = "+" + wa_id.lstrip("+") if wa_id else str(event.recipient.user_id)
        found = await deps.store.adopt(event.wamid, event.phone_number_id, recipient)
        if found is None:
            return "unknown"
        row = found
    else:
        return "unknown"
    log.warning(
        "a send whose answer was lost was accepted by Meta: recorded from its status",
        extra=fields(command_id=row.command_id, wamid=event.wamid, attempt=event.send_attempt),
    )
    await deps.publish(_adopted_event(row, event))
    return "adopted"


async def _adopt_tagged(
    deps: Deps, event: MessageStatus, command_id: str
) -> LogRow | Literal["adopted", "ignored", "unknown"]:
    """The row a tagged status adopts now, or what became of the status otherwise."""
    adoption = await deps.store.adopt_sent(event.wamid, command_id)
    row = adoption.row
    if adoption.outcome == "known":
        return "adopted"  # the status applies to its row as any other
    if adoption.outcome == "duplicate" and row is not None:
        deps.metrics.duplicated.labels(row.phone_number_id, row.kind).inc()
        log.error(
            "Meta accepted one send command twice (an answer was lost and it was sent again)",
            extra=fields(
                command_id=row.command_id,
                wamid=row.wamid,
                extra_wamid=event.wamid,
                attempt=event.send_attempt,
            ),
        )
        return "ignored"
    if adoption.outcome == "late" and row is not None:
        log.warning(
            "a send that had failed was accepted by Meta after all",
            extra=fields(command_id=row.command_id, wamid=event.wamid),
        )
        return "adopted"
    if adoption.outcome != "adopted" or row is None:
        return "unknown"
    return row


def _adopted_event(row: LogRow, event: MessageStatus) -> MessageSent:
    return MessageSent(
        event_id=sent_event_id(row.command_id, row.used_fallback),
        correlation_id=row.command_id,
        command_id=row.command_id,
        wamid=event.wamid,
        to=row.recipient,
        phone_number_id=row.phone_number_id,
        kind=row.kind,
        used_fallback_template=row.used_fallback,
        biz_opaque_callback_data=event.biz_opaque_callback_data,
    )


async def _fall_back_late(deps: Deps, event: MessageStatus, attempt: int) -> bool:
    """131047 in a failed status, after Meta accepted the send (how Meta usually reports it): the
    command's fallback template goes out as for a 131047 answer. True when the status is handled
    so (a retry of this status drives the same send on: it is idempotent)."""
    found = await deps.store.reopen_for_fallback(event.wamid, event.errors[0])
    if found is None:
        return False  # no fallback template (or not logged yet): the usual failed path
    command_json, reopened = found
    command = SendMessage.model_validate_json(command_json)
    if reopened:
        number = command.phone_number_id or deps.config.default_number
        deps.metrics.retries.labels(number, "131047_fallback").inc()
        log.info(
            "outside the 24 h window (reported after acceptance): sending the fallback template",
            extra=fields(command_id=command.event_id, wamid=event.wamid),
        )
    # The send's own path (pacing, pair limit, claim, idempotency); a RetryLater from it puts
    # this status back, and its next try finds the send done or drives it on.
    await handle_send(deps, command, attempt + 1)
    return True
