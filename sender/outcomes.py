"""What becomes of one handling of one send command: its result events (the same event ids
every time, so a command seen again publishes the same outcome) and the ways it is put back.

A command is put back with ``RetryLater`` (the bus's wait tiers): :func:`hold` for a limit or a
circuit (no try spent), :func:`retry` after an answer worth another try, both never past the
command's validity, after which it fails (:func:`expire`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from sender.deps import SERVICE, Deps
from sender.policy import MAINTENANCE, backoff, failure_reason
from sender.store import FAILED_RANK, LogRow, NewMessage
from shared.bus import RetryLater
from shared.events import (
    ErrorReported,
    FailureReason,
    MessageFailed,
    MessageSent,
    MetaError,
    SendMessage,
    stable_id,
)
from shared.logs import fields

log = logging.getLogger("mensajero.sender")


@dataclass
class Send:
    """One handling of one command."""

    deps: Deps
    command: SendMessage
    number: str
    to: str
    kind: str
    record: NewMessage
    valid_until: datetime
    lease_ends: float = 0.0  # monotonic: when another try may take the message over
    marketing: bool = False  # the command's template is a marketing one
    marketing_stopped: bool = False  # the claim said: the customer stopped marketing messages
    customer: str = ""  # the recipient's customer key (pair limit), as this replica knows it

    @property
    def command_id(self) -> str:
        return self.command.event_id

    def seconds_left(self) -> float:
        """Until the command's validity ends."""
        return (self.valid_until - self.deps.clock()).total_seconds()


def hold(send: Send, reason: str, delay: float) -> None:
    """Put the command back for ``delay`` (never past its validity: it then fails as expired)."""
    raise RetryLater(reason, max(0.0, min(delay, send.seconds_left() + 0.001)))


async def retry(
    send: Send,
    reason: str,
    meta: MetaError | None,
    attempts: int,
    *,
    label: str,
    at_least: float = 0.0,
) -> None:
    """Back off and try again (``RetryLater``), or fail when the validity ends first."""
    deps, cfg = send.deps, send.deps.config
    delay = max(at_least, backoff(attempts, cfg.backoff_base, cfg.backoff_max, deps.rng))
    if meta is not None and meta.code == MAINTENANCE:
        delay = min(delay, 60.0)
    if send.seconds_left() <= delay:
        await fail(
            send,
            f"gave up: the validity period ends before the next try (last error: {reason})",
            meta,
            code=str(meta.code) if meta else "unavailable",
        )
        return
    await deps.store.release(send.command_id, reason, meta)
    deps.metrics.retries.labels(send.number, label).inc()
    log.info(
        "send will be retried",
        extra=fields(command_id=send.command_id, delay=round(delay, 3), reason=reason),
    )
    raise RetryLater(reason, delay)


async def expire(send: Send) -> None:
    row = await send.deps.store.get(send.command_id)
    last = row.reason if row is not None else None
    error = row.error if row is not None else None
    reason = "validity period ended before the message could be sent"
    if last:
        reason += f" (last error: {last})"
    await fail(send, reason, error, code=str(error.code) if error else "expired")


async def fail(
    send: Send,
    reason: str,
    error: MetaError | None,
    *,
    code: str,
    alert: bool = False,
    meaning: FailureReason | None = None,
) -> None:
    """Record the command failed (counted once, by ``code``) and publish its ``MessageFailed``;
    when it went out after all (a status adopted it meanwhile), publish that outcome instead.
    ``meaning``: the reason code, for a failure the sender decided without Meta's code."""
    deps = send.deps
    changed = await deps.store.failed(send.record, reason, error, meaning)
    if changed:
        deps.metrics.failed.labels(send.number, send.kind, code).inc()
        log.warning(
            "send failed",
            extra=fields(command_id=send.command_id, to=send.to, reason=reason),
        )
    else:
        row = await deps.store.get(send.command_id)
        if row is not None and row.status_rank != FAILED_RANK:
            await republish(send, row)  # it went out after all
            return
        if row is not None:
            reason, error = row.reason or reason, row.error or error
            meaning = _meaning(row.reason_code) or meaning
    await deps.publish(failed_event(send, reason, error, None, meaning))
    if alert and error is not None:
        await deps.publish(alert_event(send.command_id, send.number, reason, error))


def failed_event(
    send: Send,
    reason: str,
    error: MetaError | None,
    wamid: str | None,
    meaning: FailureReason | None = None,
) -> MessageFailed:
    return MessageFailed(
        event_id=stable_id(send.command_id, "failed"),
        correlation_id=send.command.correlation_id or send.command_id,
        command_id=send.command_id,
        to=send.to,
        phone_number_id=send.number,
        kind=send.kind,
        reason=reason,
        reason_code=meaning or failure_reason(error),
        error=error,
        wamid=wamid,
    )


def _meaning(recorded: str | None) -> FailureReason | None:
    """A reason code read back from the log (one of FailureReason's, or None)."""
    return next((r for r in get_args(FailureReason) if r == recorded), None)


def alert_event(command_id: str, number: str, reason: str, error: MetaError) -> ErrorReported:
    return ErrorReported(
        event_id=stable_id(command_id, "error"),
        correlation_id=command_id,
        service=SERVICE,
        error_type="meta_send_error",
        message=reason,
        meta_code=error.code,
        phone_number_id=number,
        details={"command_id": command_id, "title": error.title, "details": error.details},
    )


async def republish(send: Send, row: LogRow) -> None:
    """A command seen again: publish its recorded outcome again (same event ids)."""
    if row.status == "failed":
        meaning = _meaning(row.reason_code)
        reason = row.reason or "failed"
        await send.deps.publish(failed_event(send, reason, row.error, row.wamid, meaning))
    elif row.wamid is not None:
        await send.deps.publish(sent_event(send, row.wamid, row.used_fallback))


def sent_event_id(command_id: str, used_fallback: bool) -> str:
    """A command's MessageSent id. The fallback template's send has its own: when Meta reports the
    window closed only after accepting the first send (a failed status), both are published."""
    if used_fallback:
        return stable_id(command_id, "accepted", "fallback")
    return stable_id(command_id, "accepted")


def sent_event(send: Send, wamid: str, used_fallback: bool) -> MessageSent:
    return MessageSent(
        event_id=sent_event_id(send.command_id, used_fallback),
        correlation_id=send.command.correlation_id or send.command_id,
        command_id=send.command_id,
        wamid=wamid,
        to=send.to,
        phone_number_id=send.number,
        kind=send.kind,
        used_fallback_template=used_fallback,
        biz_opaque_callback_data=send.command.biz_opaque_callback_data,
    )
