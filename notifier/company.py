"""The mail to a company profile's people (``notification_emails``, from its ``email_bot``)."""

from __future__ import annotations

import logging

from notifier.company_mail import render_transcript, render_unattended
from notifier.delivery import email, record_and_deliver
from notifier.deps import Deps
from shared.events import Event, HandoffClosed, HandoffUnattended
from shared.logs import fields
from shared.profiles import CompanyProfile

log = logging.getLogger("mensajero.notifier")


def _no_recipients(deps: Deps, kind: str, event: Event, profile: CompanyProfile) -> None:
    deps.metrics.skipped.labels(kind=kind, reason="no_recipients").inc()
    log.warning(
        "profile has no notification_emails; mail not sent",
        extra=fields(kind=kind, profile_id=profile.id, event_id=event.event_id),
    )


async def on_unattended(deps: Deps, event: HandoffUnattended) -> None:
    """A customer asked for a person and nobody could attend them."""
    config = deps.config
    profile = config.profiles.by_id(event.profile_id)
    if not profile.notification_emails:
        _no_recipients(deps, "handoff_unattended", event, profile)
        return
    rendered = render_unattended(event, profile, config.texts, config.tz_for(profile))
    to = tuple(profile.notification_emails)
    mail = email(profile.email_bot, to, config.reply_to_for(profile), rendered)
    await record_and_deliver(
        deps,
        key=event.event_id,
        kind="handoff_unattended",
        mail=mail,
        correlation_id=event.correlation_id,
    )


async def on_closed(deps: Deps, event: HandoffClosed) -> None:
    """A case closed: its transcript (none when nobody wrote anything)."""
    config = deps.config
    profile = config.profiles.by_id(event.profile_id)
    if not profile.notification_emails:
        _no_recipients(deps, "transcript", event, profile)
        return
    if not event.transcript:
        deps.metrics.skipped.labels(kind="transcript", reason="empty_transcript").inc()
        log.info(
            "handoff closed without messages; no transcript mail",
            extra=fields(case_code=event.case_code, event_id=event.event_id),
        )
        return
    rendered = render_transcript(event, profile, config.texts, config.tz_for(profile))
    to = tuple(profile.notification_emails)
    mail = email(profile.email_bot, to, config.reply_to_for(profile), rendered)
    await record_and_deliver(
        deps, key=event.event_id, kind="transcript", mail=mail, correlation_id=event.correlation_id
    )
