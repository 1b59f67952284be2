"""The operators' mail under storm control: each occurrence (an error, or an alert on one of
Meta's signals) counted in its digest, the first of a window mailed at once (while the
per-minute cap allows), and a digest mail when the window ends.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, tzinfo

from notifier.alert_mail import render_alert
from notifier.body import Rendered
from notifier.delivery import deliver, email
from notifier.deps import Deps
from notifier.domain import DigestEntry, ErrorInfo, plan_digest_mails
from notifier.report_mail import render_digest, render_error
from notifier.repository import Repository
from notifier.texts import Texts
from shared.db import Connection
from shared.events import EmailQueued, Event, stable_id
from shared.logs import fields
from shared.outbox import add_to_outbox

log = logging.getLogger("mensajero.notifier")
# The "error mails per minute reached" warning is logged at most this often (seconds).
CAP_WARNING_EVERY = 60.0


@dataclass
class Reported:
    first_time: bool  # False: a redelivery, already counted
    mailed: bool  # a mail of its own (else its digest carries it)


async def report(deps: Deps, info: ErrorInfo) -> Reported:
    """Count the occurrence in its digest; the first of a window is mailed at once.

    The first one is mailed only while the per-minute cap allows; otherwise the digest carries
    it. A redelivery finishes what its first run started (if it recorded a mail).
    """
    now = deps.clock()
    config = deps.config
    mailed = False

    async def work(conn: Connection) -> list[Event]:
        nonlocal mailed
        mailed = False  # a conflict runs it again
        repo = deps.repository(conn)
        folded = await repo.fold_error(info, now=now, window=config.digest_window_seconds)
        if not folded.opened:
            return []
        capacity = await repo.error_mail_capacity(
            now=now, per_minute=config.operator_mails_per_minute
        )
        if capacity <= 0:
            return []
        rendered = render_occurrence(info, config.texts, config.tz)
        mail = email(config.operator_sender, config.operator_recipients, config.reply_to, rendered)
        await repo.add_email(
            key=info.event_id,
            kind=info.kind,
            email=mail,
            now=now,
            correlation_id=info.correlation_id,
        )
        await repo.mark_reported(folded.digest_id)
        mailed = True
        return []

    first_time = await deps.outbox.handle_once(info.event_id, work)
    if mailed or not first_time:
        await deliver(deps, info.event_id, expected=mailed)
    return Reported(first_time=first_time, mailed=mailed)


def render_occurrence(info: ErrorInfo, texts: Texts, tz: tzinfo) -> Rendered:
    if info.alert is not None:
        return render_alert(info.alert, info.occurred_at, texts, tz)
    return render_error(info, texts, tz)


async def on_error(deps: Deps, info: ErrorInfo) -> None:
    """An error occurrence (``error.reported``, or one of a webhook's errors), to the operators."""
    reported = await report(deps, info)
    if reported.first_time:
        deps.metrics.errors_received.inc()
        if not reported.mailed:
            deps.metrics.errors_folded.inc()
            log.debug(
                "error folded into its digest",
                extra=fields(fingerprint=info.fingerprint, event_id=info.event_id),
            )


async def flush_digests(deps: Deps) -> int:
    """Close digests whose window ended and queue their mails; returns the mails queued."""
    now = deps.clock()
    per_minute = deps.config.operator_mails_per_minute
    async with deps.transaction() as (conn, repo):
        capacity = await repo.error_mail_capacity(now=now, per_minute=per_minute)
        due = await repo.due_digests(now=now)
        if not due:
            return 0
        # Every occurrence already mailed on its own: the window closes without a mail.
        quiet = [entry for entry in due if entry.unreported <= 0]
        if quiet:
            await repo.close_digests(quiet, now=now, mail_key=None)
        groups = plan_digest_mails(due, capacity)
        queued = [await _queue_digest_mail(deps, repo, group, now) for group in groups]
        source = stable_id("digest-flush", *(event.key for event in queued))
        await add_to_outbox(conn, source, queued)
    waiting = sum(1 for e in due if e.unreported > 0) - sum(len(g) for g in groups)
    if waiting > 0 and time.monotonic() - deps.last_cap_warning > CAP_WARNING_EVERY:
        deps.last_cap_warning = time.monotonic()
        log.warning(
            "error mails per minute reached; digests keep counting until there is room",
            extra=fields(waiting=waiting, per_minute=per_minute),
        )
    if queued:
        await deps.outbox.flush(source)
    for event in queued:
        log.info("digest mail queued", extra=fields(key=event.key))
    return len(queued)


async def on_queued(deps: Deps, event: EmailQueued) -> None:
    """The notifier's own command: send the digest mail :func:`flush_digests` recorded."""
    await deliver(deps, event.key)


async def _queue_digest_mail(
    deps: Deps, repo: Repository, group: list[DigestEntry], now: datetime
) -> EmailQueued:
    """Record the mail of ``group`` and close its digests (in the flush's transaction)."""
    config = deps.config
    key = "digest:" + stable_id("digest", *(str(e.digest_id) for e in group))
    rendered = render_digest(group, config.texts, config.tz)
    mail = email(config.operator_sender, config.operator_recipients, config.reply_to, rendered)
    await repo.add_email(key=key, kind="digest", email=mail, now=now)
    await repo.close_digests(group, now=now, mail_key=key)
    return EmailQueued(event_id=stable_id("email", key), key=key, kind="digest")
