"""The mail to a company profile's people (``notification_emails``, from its ``email_bot``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import tzinfo
from typing import TypeVar

from notifier.body import Rendered
from notifier.company_mail import render_transcript, render_unattended
from notifier.delivery import email, record_and_deliver
from notifier.deps import Deps
from notifier.texts import Texts
from shared.events import HandoffClosed, HandoffUnattended
from shared.logs import fields
from shared.profiles import CompanyProfile

log = logging.getLogger("mensajero.notifier")
E = TypeVar("E", HandoffUnattended, HandoffClosed)
Render = Callable[[E, CompanyProfile, Texts, tzinfo], Rendered]


async def on_unattended(deps: Deps, event: HandoffUnattended) -> None:
    """A customer asked for a person and nobody could attend them."""
    profile = deps.config.profiles.by_id(event.profile_id)
    await _mail_profile(deps, event, profile, "handoff_unattended", render_unattended)


async def on_closed(deps: Deps, event: HandoffClosed) -> None:
    """A case closed: its transcript (none when nobody wrote anything)."""
    profile = deps.config.profiles.by_id(event.profile_id)
    if profile.notification_emails and not event.transcript:
        deps.metrics.skipped.labels(kind="transcript", reason="empty_transcript").inc()
        log.info(
            "handoff closed without messages; no transcript mail",
            extra=fields(case_code=event.case_code, event_id=event.event_id),
        )
        return
    await _mail_profile(deps, event, profile, "transcript", render_transcript)


async def _mail_profile(
    deps: Deps, event: E, profile: CompanyProfile, kind: str, render: Render[E]
) -> None:
    """Mail ``event`` to the profile's people (skipped, counted, when it names nobody)."""
    if not profile.notification_emails:
        deps.metrics.skipped.labels(kind=kind, reason="no_recipients").inc()
        log.warning(
            "profile has no notification_emails; mail not sent",
            extra=fields(kind=kind, profile_id=profile.id, event_id=event.event_id),
        )
        return
    config = deps.config
    rendered = render(event, profile, config.texts, config.tz_for(profile))
    to = tuple(profile.notification_emails)
    mail = email(profile.email_bot, to, config.reply_to_for(profile), rendered)
    await record_and_deliver(
        deps, key=event.event_id, kind=kind, mail=mail, correlation_id=event.correlation_id
    )
