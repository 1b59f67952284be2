"""Sending one recorded email, once: the step every mail ends in.

Every email is first recorded under a key (the event id, or a digest mail's key) and then
delivered by :func:`deliver`, which claims it before each attempt, so an event delivered twice
sends one email.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from notifier.body import Rendered
from notifier.deps import Deps
from notifier.mailer import Email, MailError, SendResult
from notifier.pacing import backoff_delay
from notifier.repository import Claim, StoredEmail
from shared.bus import Reject, RetryLater
from shared.logs import fields

log = logging.getLogger("mensajero.notifier")


def email(sender: str, to: tuple[str, ...], reply_to: tuple[str, ...], rendered: Rendered) -> Email:
    return Email(
        sender=sender,
        to=to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        reply_to=reply_to,
    )


async def record_and_deliver(
    deps: Deps, *, key: str, kind: str, mail: Email, correlation_id: str | None
) -> None:
    async with deps.repo() as repo:
        await repo.add_email(
            key=key, kind=kind, email=mail, now=deps.clock(), correlation_id=correlation_id
        )
    await deliver(deps, key)


async def deliver(deps: Deps, key: str, *, expected: bool = True) -> None:
    """Send the email recorded under ``key`` unless it went out (or was suppressed) already.

    Throttling is retried here with backoff, then handed back to the bus (``RetryLater``); a
    permanent rejection is recorded, logged, counted and dead-lettered (``Reject``).
    """
    lease = deps.config.retries.claim_lease_seconds
    async with deps.repo() as repo:
        state, stored = await repo.claim_email(key, now=deps.clock(), lease=lease)
    if state == Claim.BUSY:
        raise RetryLater("email is being sent by another delivery", lease)
    if stored is None:
        if state == Claim.MISSING and expected:
            log.warning("no email recorded under this key", extra=fields(key=key))
        return
    finished = False
    try:
        finished = await _send(deps, stored)
    finally:
        if not finished:
            # Interrupted (throttled past our attempts, cancelled, a crash in between):
            # give it back so that the next delivery sends it.
            await asyncio.shield(_release(deps, key))


async def _release(deps: Deps, key: str) -> None:
    try:
        async with deps.repo() as repo:
            if await repo.email_status(key) == "sending":
                await repo.mark_status(key, "pending")
    except Exception:  # the lease lets a later delivery take it anyway
        log.exception("could not release an email", extra=fields(key=key))


async def _send(deps: Deps, stored: StoredEmail) -> bool:
    """Send one claimed email; True when it reached a final state (sent/suppressed/failed)."""
    remaining = await _unsuppressed(deps, stored)
    if not remaining:
        async with deps.repo() as repo:
            await repo.mark_status(stored.key, "suppressed")
        return True
    mail = replace(stored.email, to=remaining)
    attempt = 0
    while True:
        attempt += 1
        await deps.pacer.wait()
        started = time.monotonic()
        try:
            result = await deps.mailer.send(mail)
        except MailError as error:
            deps.metrics.send_seconds.observe(time.monotonic() - started)
            await _failed(deps, stored, mail, error, attempt)
            continue
        deps.metrics.send_seconds.observe(time.monotonic() - started)
        async with deps.repo() as repo:
            await repo.mark_sent(stored.key, message_id=result.message_id, now=deps.clock())
        deps.metrics.sent.labels(kind=stored.kind).inc()
        _log_sent(stored, mail, result, attempt)
        return True


async def _unsuppressed(deps: Deps, stored: StoredEmail) -> tuple[str, ...]:
    """The recipients not on the suppression list (each one left out is counted and logged)."""
    async with deps.repo() as repo:
        suppressed = await repo.suppressed_among(stored.email.to)
    for address, reason in suppressed.items():
        deps.metrics.suppressed.inc()
        log.warning(
            "email to a suppressed address skipped",
            extra=fields(
                provider="ses",
                kind=stored.kind,
                key=stored.key,
                to=address,
                reason=reason,
                subject=stored.email.subject,
            ),
        )
    return tuple(address for address in stored.email.to if address not in suppressed)


async def _failed(
    deps: Deps, stored: StoredEmail, mail: Email, error: MailError, attempt: int
) -> None:
    """After a failed attempt: returns to try again now (after a backoff), or raises."""
    deps.metrics.failed.labels(kind=stored.kind, error_type=error.error_type).inc()
    _log_failure(stored, mail, error, attempt)
    if not error.retryable:
        async with deps.repo() as repo:
            await repo.mark_status(
                stored.key,
                "failed",
                error_type=error.error_type,
                error_message=error.message[:1000],
            )
        raise Reject(f"SES rejected the email: {error.error_type}: {error.message}") from error
    retries = deps.config.retries
    delay = backoff_delay(attempt, retries.backoff_seconds, retries.backoff_max_seconds)
    if error.throttled:
        deps.pacer.slow_down(delay)
    if attempt >= retries.max_attempts:
        raise RetryLater(f"SES {error.error_type} after {attempt} attempts", delay) from error
    await asyncio.sleep(delay)


def _log_sent(stored: StoredEmail, mail: Email, result: SendResult, attempt: int) -> None:
    log.info(
        "email sent",
        extra=_mail_fields(
            stored,
            mail,
            message_id=result.message_id,
            status_code=result.status_code,
            request_id=result.request_id,
            attempts=attempt,
            correlation_id=stored.correlation_id,
        ),
    )


def _log_failure(stored: StoredEmail, mail: Email, error: MailError, attempt: int) -> None:
    log.log(
        logging.WARNING if error.retryable else logging.ERROR,
        "email send failed, will retry" if error.retryable else "email send failed",
        extra=_mail_fields(
            stored,
            mail,
            error_type=error.error_type,
            message=error.message,
            request_id=error.request_id,
            status_code=error.status_code,
            retryable=error.retryable,
            attempt=attempt,
        ),
    )


def _mail_fields(stored: StoredEmail, mail: Email, **specific: Any) -> dict[str, Any]:
    """The fields of a send's log line: which mail, what happened, and to whom."""
    return fields(
        provider="ses",
        kind=stored.kind,
        key=stored.key,
        **specific,
        subject=mail.subject,
        **{"from": mail.sender, "to": ",".join(mail.to)},
    )
