"""What the notifier does with each event: plain functions over its ports.

Ports: a :class:`~notifier.mailer.Mailer` (SES, or a fake), the PostgreSQL pool (the email log,
the suppression list and the digests, see :mod:`notifier.repository`), the bus (for the outbox)
and a clock. Every email is first recorded under a key (the event id, or a digest mail's key)
and then delivered by :func:`deliver`, so an event delivered twice sends one email.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo

from notifier import repository as repo
from notifier.domain import ErrorInfo, from_webhook_errors, plan_digest_mails
from notifier.mailer import Email, Mailer, MailError
from notifier.metrics import Metrics
from notifier.pacing import Pacer, backoff_delay
from notifier.settings import Settings
from notifier.templates import (
    Rendered,
    Texts,
    render_digest,
    render_error,
    render_transcript,
    render_unattended,
    zone,
)
from shared.bus import Bus, Delivery, Handler, Reject, RetryLater
from shared.db import Connection, Pool
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
    stable_id,
    utcnow,
)
from shared.logs import fields
from shared.outbox import add_to_outbox, handle_once, publish_pending
from shared.profiles import CompanyProfile, Profiles

log = logging.getLogger("mensajero.notifier")

Clock = Callable[[], datetime]
PRUNE_INTERVAL_SECONDS = 3600.0

ROUTING_KEYS = (
    ErrorReported.TYPE,
    WebhookErrors.TYPE,
    HandoffUnattended.TYPE,
    HandoffClosed.TYPE,
    EmailBounced.TYPE,
    EmailComplained.TYPE,
    EmailDelivered.TYPE,
    EmailQueued.TYPE,
)


@dataclass
class Notifier:
    """The notifier's ports and configuration, handed to every handler."""

    settings: Settings
    pool: Pool
    bus: Bus
    mailer: Mailer
    pacer: Pacer
    metrics: Metrics
    texts: Texts
    profiles: Profiles
    tz: tzinfo
    clock: Clock = utcnow
    _last_cap_warning: float = field(default=0.0, repr=False)

    def tz_for(self, profile: CompanyProfile) -> tzinfo:
        return zone(profile.timezone)


# --------------------------------------------------------------------------- delivery


async def deliver(n: Notifier, key: str, *, expected: bool = True) -> None:
    """Send the email recorded under ``key`` unless it went out (or was suppressed) already.

    Throttling is retried here with backoff, then handed back to the bus (``RetryLater``); a
    permanent rejection is recorded, logged, counted and dead-lettered (``Reject``).
    """
    state, stored = await repo.claim_email(
        n.pool, key, now=n.clock(), lease=n.settings.EMAIL_CLAIM_LEASE_SECONDS
    )
    if state == repo.Claim.BUSY:
        raise RetryLater(
            "email is being sent by another delivery", n.settings.EMAIL_CLAIM_LEASE_SECONDS
        )
    if stored is None:
        if state == repo.Claim.MISSING and expected:
            log.warning("no email recorded under this key", extra=fields(key=key))
        return
    finished = False
    try:
        finished = await _send(n, stored)
    finally:
        if not finished:
            # Interrupted (throttled past our attempts, cancelled, a crash in between):
            # give it back so that the next delivery sends it.
            await asyncio.shield(_release(n, key))


async def _release(n: Notifier, key: str) -> None:
    try:
        if await repo.email_status(n.pool, key) == "sending":
            await repo.mark_status(n.pool, key, "pending")
    except Exception:  # the lease lets a later delivery take it anyway
        log.exception("could not release an email", extra=fields(key=key))


async def _send(n: Notifier, stored: repo.StoredEmail) -> bool:
    """Send one claimed email; True when it reached a final state (sent/suppressed/failed)."""
    email = stored.email
    kind = stored.kind
    suppressed = await repo.suppressed_among(n.pool, email.to)
    for address, reason in suppressed.items():
        n.metrics.suppressed.inc()
        log.warning(
            "email to a suppressed address skipped",
            extra=fields(
                provider="ses",
                kind=kind,
                key=stored.key,
                to=address,
                reason=reason,
                subject=email.subject,
            ),
        )
    remaining = tuple(address for address in email.to if address not in suppressed)
    if not remaining:
        await repo.mark_status(n.pool, stored.key, "suppressed")
        return True
    email = replace(email, to=remaining)

    settings = n.settings
    attempt = 0
    while True:
        attempt += 1
        await n.pacer.wait()
        started = time.monotonic()
        try:
            result = await n.mailer.send(email)
        except MailError as error:
            n.metrics.send_seconds.observe(time.monotonic() - started)
            n.metrics.failed.labels(kind=kind, error_type=error.error_type).inc()
            _log_failure(stored, email, error, attempt)
            if not error.retryable:
                await repo.mark_status(
                    n.pool,
                    stored.key,
                    "failed",
                    error_type=error.error_type,
                    error_message=error.message[:1000],
                )
                raise Reject(
                    f"SES rejected the email: {error.error_type}: {error.message}"
                ) from error
            delay = backoff_delay(
                attempt, settings.SES_BACKOFF_SECONDS, settings.SES_BACKOFF_MAX_SECONDS
            )
            if error.throttled:
                n.pacer.slow_down(delay)
            if attempt >= settings.SES_MAX_ATTEMPTS:
                raise RetryLater(
                    f"SES {error.error_type} after {attempt} attempts", delay
                ) from error
            await asyncio.sleep(delay)
            continue
        n.metrics.send_seconds.observe(time.monotonic() - started)
        await repo.mark_sent(n.pool, stored.key, message_id=result.message_id, now=n.clock())
        n.metrics.sent.labels(kind=kind).inc()
        log.info(
            "email sent",
            extra=fields(
                provider="ses",
                kind=kind,
                key=stored.key,
                message_id=result.message_id,
                status_code=result.status_code,
                request_id=result.request_id,
                subject=email.subject,
                attempts=attempt,
                correlation_id=stored.correlation_id,
                **{"from": email.sender, "to": ",".join(email.to)},
            ),
        )
        return True


def _log_failure(stored: repo.StoredEmail, email: Email, error: MailError, attempt: int) -> None:
    level = logging.WARNING if error.retryable else logging.ERROR
    log.log(
        level,
        "email send failed" if not error.retryable else "email send failed, will retry",
        extra=fields(
            provider="ses",
            kind=stored.kind,
            key=stored.key,
            error_type=error.error_type,
            message=error.message,
            request_id=error.request_id,
            status_code=error.status_code,
            retryable=error.retryable,
            attempt=attempt,
            subject=email.subject,
            **{"from": email.sender, "to": ",".join(email.to)},
        ),
    )


def _email(sender: str, to: list[str], reply_to: list[str], rendered: Rendered) -> Email:
    return Email(
        sender=sender,
        to=tuple(to),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        reply_to=tuple(reply_to),
    )


async def _record_and_deliver(
    n: Notifier, *, key: str, kind: str, email: Email, correlation_id: str | None
) -> None:
    async with n.pool.acquire() as conn:
        await repo.add_email(
            conn, key=key, kind=kind, email=email, now=n.clock(), correlation_id=correlation_id
        )
    await deliver(n, key)


# --------------------------------------------------------------------------- errors


async def on_error(n: Notifier, info: ErrorInfo) -> None:
    """Count the occurrence in its digest; the first of a window is mailed at once.

    The first one is mailed only while the per-minute cap allows; otherwise the digest carries it.
    """
    now = n.clock()
    mailed = False

    async def work(conn: Connection) -> list[Event]:
        nonlocal mailed
        folded = await repo.fold_error(
            conn, info, now=now, window=n.settings.ERROR_DIGEST_WINDOW_SECONDS
        )
        if not folded.opened:
            return []
        capacity = await repo.error_mail_capacity(
            conn, now=now, per_minute=n.settings.ERROR_MAILS_PER_MINUTE
        )
        if capacity <= 0:
            return []
        rendered = render_error(info, n.texts, n.tz)
        email = _email(
            n.settings.ERROR_FROM_EMAIL, n.settings.error_recipients, n.settings.reply_to, rendered
        )
        await repo.add_email(
            conn,
            key=info.event_id,
            kind="error",
            email=email,
            now=now,
            correlation_id=info.correlation_id,
        )
        await repo.mark_reported(conn, folded.digest_id)
        mailed = True
        return []

    first_time = await handle_once(n.pool, n.bus, info.event_id, work)
    if first_time:
        n.metrics.errors_received.inc()
        if not mailed:
            n.metrics.errors_folded.inc()
            log.debug(
                "error folded into its digest",
                extra=fields(fingerprint=info.fingerprint, event_id=info.event_id),
            )
    if mailed or not first_time:
        # A redelivery finishes what its first run started (if it recorded a mail).
        await deliver(n, info.event_id, expected=mailed)


async def flush_digests(n: Notifier) -> int:
    """Close digests whose window ended and queue their mails; returns the mails queued."""
    now = n.clock()
    queued: list[EmailQueued] = []
    async with n.pool.acquire() as conn:
        async with conn.transaction():
            capacity = await repo.error_mail_capacity(
                conn, now=now, per_minute=n.settings.ERROR_MAILS_PER_MINUTE
            )
            due = await repo.due_digests(conn, now=now)
            if not due:
                return 0
            # Every occurrence already mailed on its own: the window closes without a mail.
            quiet = [entry for entry in due if entry.unreported <= 0]
            if quiet:
                await repo.close_digests(conn, quiet, now=now, mail_key=None)
            groups = plan_digest_mails(due, capacity)
            for group in groups:
                key = "digest:" + stable_id("digest", *(str(e.digest_id) for e in group))
                rendered = render_digest(group, n.texts, n.tz)
                email = _email(
                    n.settings.ERROR_FROM_EMAIL,
                    n.settings.error_recipients,
                    n.settings.reply_to,
                    rendered,
                )
                await repo.add_email(conn, key=key, kind="digest", email=email, now=now)
                await repo.close_digests(conn, group, now=now, mail_key=key)
                queued.append(EmailQueued(event_id=stable_id("email", key), key=key, kind="digest"))
            waiting = sum(1 for e in due if e.unreported > 0) - sum(len(g) for g in groups)
            source = stable_id("digest-flush", *(event.key for event in queued))
            await add_to_outbox(conn, source, queued)
        if waiting > 0 and time.monotonic() - n._last_cap_warning > 60:
            n._last_cap_warning = time.monotonic()
            log.warning(
                "error mails per minute reached; digests keep counting until there is room",
                extra=fields(waiting=waiting, per_minute=n.settings.ERROR_MAILS_PER_MINUTE),
            )
        if queued:
            await publish_pending(conn, n.bus, source_id=source)
    for event in queued:
        log.info("digest mail queued", extra=fields(key=event.key))
    return len(queued)


async def run_flusher(n: Notifier) -> None:
    """Background task: flush due digests, publish what the outbox still holds, prune old rows."""
    interval = n.settings.DIGEST_FLUSH_INTERVAL_SECONDS
    last_prune = 0.0
    while True:
        try:
            await flush_digests(n)
            async with n.pool.acquire() as conn:
                await publish_pending(conn, n.bus)
            if time.monotonic() - last_prune > PRUNE_INTERVAL_SECONDS:
                last_prune = time.monotonic()
                retention = timedelta(days=n.settings.EMAIL_LOG_RETENTION_DAYS)
                emails, digests = await repo.prune(n.pool, before=n.clock() - retention)
                if emails or digests:
                    log.info("old rows pruned", extra=fields(emails=emails, digests=digests))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("digest flush failed; trying again")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- handoff


def _profile_reply_to(n: Notifier, profile: CompanyProfile) -> list[str]:
    return [profile.reply_to] if profile.reply_to else n.settings.reply_to


def _no_recipients(n: Notifier, kind: str, event: Event, profile: CompanyProfile) -> None:
    n.metrics.skipped.labels(kind=kind, reason="no_recipients").inc()
    log.warning(
        "profile has no notification_emails; mail not sent",
        extra=fields(kind=kind, profile_id=profile.id, event_id=event.event_id),
    )


async def on_unattended(n: Notifier, event: HandoffUnattended) -> None:
    profile = n.profiles.by_id(event.profile_id)
    if not profile.notification_emails:
        _no_recipients(n, "handoff_unattended", event, profile)
        return
    rendered = render_unattended(event, profile, n.texts, n.tz_for(profile))
    email = _email(
        profile.email_bot, profile.notification_emails, _profile_reply_to(n, profile), rendered
    )
    await _record_and_deliver(
        n,
        key=event.event_id,
        kind="handoff_unattended",
        email=email,
        correlation_id=event.correlation_id,
    )


async def on_closed(n: Notifier, event: HandoffClosed) -> None:
    profile = n.profiles.by_id(event.profile_id)
    if not profile.notification_emails:
        _no_recipients(n, "transcript", event, profile)
        return
    if not event.transcript:
        n.metrics.skipped.labels(kind="transcript", reason="empty_transcript").inc()
        log.info(
            "handoff closed without messages; no transcript mail",
            extra=fields(case_code=event.case_code, event_id=event.event_id),
        )
        return
    rendered = render_transcript(event, profile, n.texts, n.tz_for(profile))
    email = _email(
        profile.email_bot, profile.notification_emails, _profile_reply_to(n, profile), rendered
    )
    await _record_and_deliver(
        n, key=event.event_id, kind="transcript", email=email, correlation_id=event.correlation_id
    )


# --------------------------------------------------------------------------- SES feedback


async def on_bounce(n: Notifier, event: EmailBounced) -> None:
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
        n, event.event_id, event.addresses, "bounce", event.bounce_subtype, event.ses_message_id
    )


async def on_complaint(n: Notifier, event: EmailComplained) -> None:
    await _suppress(
        n, event.event_id, event.addresses, "complaint", event.feedback_type, event.ses_message_id
    )


async def _suppress(
    n: Notifier,
    event_id: str,
    addresses: list[str],
    reason: str,
    detail: str | None,
    ses_message_id: str | None,
) -> None:
    """Put addresses on the suppression list; count and log the ones new to it."""
    added = await repo.suppress(
        n.pool, addresses, reason=reason, detail=detail, source_event_id=event_id
    )
    for address in added:
        n.metrics.addresses_suppressed.labels(reason=reason).inc()
        log.warning(
            f"address suppressed after a {reason}",
            extra=fields(address=address, detail=detail, ses_message_id=ses_message_id),
        )


async def on_delivered(n: Notifier, event: EmailDelivered) -> None:
    if event.ses_message_id and await repo.mark_delivered(
        n.pool, event.ses_message_id, at=event.occurred_at
    ):
        log.info(
            "email delivered",
            extra=fields(
                provider="ses", message_id=event.ses_message_id, to=",".join(event.addresses)
            ),
        )


# --------------------------------------------------------------------------- dispatch


async def handle(n: Notifier, event: Event) -> None:
    if isinstance(event, ErrorReported):
        await on_error(n, ErrorInfo.from_event(event))
    elif isinstance(event, WebhookErrors):
        for info in from_webhook_errors(event):
            await on_error(n, info)
    elif isinstance(event, HandoffUnattended):
        await on_unattended(n, event)
    elif isinstance(event, HandoffClosed):
        await on_closed(n, event)
    elif isinstance(event, EmailBounced):
        await on_bounce(n, event)
    elif isinstance(event, EmailComplained):
        await on_complaint(n, event)
    elif isinstance(event, EmailDelivered):
        await on_delivered(n, event)
    elif isinstance(event, EmailQueued):
        await deliver(n, event.key)
    else:
        log.warning("event not handled by the notifier", extra=fields(type=event.type))


def bus_handler(n: Notifier) -> Handler:
    async def handler(event: Event, delivery: Delivery) -> None:
        await handle(n, event)

    return handler
