"""Meta's signals that need the operators, as alerts mailed like error reports (folded into the
same digests, under the same per-minute cap): the account restricted, disabled, in violation or
offboarded; a number's quality or messaging limit dropping; a template paused, disabled or
rejected; a utility template moved to marketing. Which signals need attention is the signal's
own rule (``shared.signals``); a signal that needs none mails nothing.

Each alert's facts are Meta's values in words (``Texts.name``) and times in the operators' zone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any

from notifier.deps import Deps
from notifier.domain import Alert, ErrorInfo
from notifier.reports import report
from notifier.texts import Texts, when
from shared.events import Event
from shared.logs import fields
from shared.signals import (
    AccountUpdate,
    PhoneNumberQuality,
    TemplateCategoryUpdate,
    TemplateStatusUpdate,
)

log = logging.getLogger("mensajero.notifier")
# Meta's template reasons that say nothing.
NO_REASON = frozenset({"", "NONE"})


def _alert(kind: str, facts: Iterable[tuple[str, Any]]) -> Alert:
    """Facts without a value are left out."""
    return Alert(
        kind, tuple((name, str(value)) for name, value in facts if value not in (None, ""))
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _moment(value: Any, tz: tzinfo) -> str | None:
    """A Unix timestamp (Meta's expirations) in the operators' zone."""
    try:
        return when(datetime.fromtimestamp(float(value), UTC), tz)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value) if value not in (None, "") else None


# --------------------------------------------------------------------------- the alerts


def account_alert(event: AccountUpdate, texts: Texts, tz: tzinfo) -> Alert | None:
    if not event.needs_attention:
        return None
    details = event.details
    facts: list[tuple[str, Any]] = [("waba_id", event.waba_id), ("meta_event", event.event)]
    if event.state == "restricted":
        facts.append(("restrictions", _restrictions(details.get("restriction_info"), texts, tz)))
    elif event.state == "disabled":
        ban = _dict(details.get("ban_info"))
        state = ban.get("waba_ban_state")
        facts.append(("ban_state", texts.name("ban_state", str(state)) if state else None))
        facts.append(("ban_date", ban.get("waba_ban_date")))
    elif event.state == "violation":
        facts.append(("violation_type", _dict(details.get("violation_info")).get("violation_type")))
    return _alert(f"account.{event.state}", facts)


def _restrictions(value: Any, texts: Texts, tz: tzinfo) -> str | None:
    found = []
    for item in value if isinstance(value, list) else []:
        kind = _dict(item).get("restriction_type")
        if not kind:
            continue
        restriction = texts.name("restriction", str(kind))
        until = _moment(_dict(item).get("expiration"), tz)
        found.append(
            texts.get("restriction.until", restriction=restriction, until=until)
            if until
            else restriction
        )
    return "; ".join(found) or None


def quality_alert(event: PhoneNumberQuality, texts: Texts) -> Alert | None:
    if not event.dropped:
        return None
    kind = "quality.flagged" if event.event == "FLAGGED" else "quality.limit"
    return _alert(
        kind,
        [
            ("number", event.display_phone_number),
            ("meta_event", event.event),
            ("old_limit", texts.name("tier", event.old_limit) if event.old_limit else None),
            (
                "current_limit",
                texts.name("tier", event.current_limit) if event.current_limit else None,
            ),
        ],
    )


def _template(event: TemplateStatusUpdate | TemplateCategoryUpdate) -> list[tuple[str, Any]]:
    return [
        ("template", event.template_name or event.template_id),
        ("language", event.language),
        ("template_id", event.template_id),
    ]


def template_status_alert(event: TemplateStatusUpdate, texts: Texts, tz: tzinfo) -> Alert | None:
    if not event.needs_attention:
        return None
    raw = event.raw
    rejection = _dict(raw.get("rejection_info"))
    other = _dict(raw.get("other_info"))
    reason = event.reason or ""
    more = " - ".join(str(part) for part in (other.get("title"), other.get("description")) if part)
    return _alert(
        f"template.{event.event.lower()}",
        [
            *_template(event),
            ("reason", texts.name("reason", reason) if reason not in NO_REASON else None),
            ("reason_detail", rejection.get("reason")),
            ("recommendation", rejection.get("recommendation")),
            ("disable_date", _moment(_dict(raw.get("disable_info")).get("disable_date"), tz)),
            ("more_info", more),
        ],
    )


def template_category_alert(
    event: TemplateCategoryUpdate, texts: Texts, tz: tzinfo
) -> Alert | None:
    if not event.made_marketing:
        return None
    previous = event.previous_category
    return _alert(
        "template.marketing",
        [
            *_template(event),
            ("previous_category", texts.name("category", previous.upper()) if previous else None),
            ("new_category", texts.name("category", event.new_category.upper())),
            ("effective_at", when(event.effective_at, tz) if event.effective_at else None),
        ],
    )


# --------------------------------------------------------------------------- the use cases


async def on_account_update(deps: Deps, event: AccountUpdate) -> None:
    config = deps.config
    await _report(deps, event, account_alert(event, config.texts, config.tz))


async def on_phone_number_quality(deps: Deps, event: PhoneNumberQuality) -> None:
    await _report(deps, event, quality_alert(event, deps.config.texts))


async def on_template_status(deps: Deps, event: TemplateStatusUpdate) -> None:
    config = deps.config
    await _report(deps, event, template_status_alert(event, config.texts, config.tz))


async def on_template_category(deps: Deps, event: TemplateCategoryUpdate) -> None:
    config = deps.config
    await _report(deps, event, template_category_alert(event, config.texts, config.tz))


async def _report(deps: Deps, event: Event, alert: Alert | None) -> None:
    if alert is None:
        log.info(
            "Meta signal needs no attention; no mail",
            extra=fields(type=event.type, event_id=event.event_id),
        )
        return
    texts = deps.config.texts
    info = ErrorInfo(
        event_id=event.event_id,
        service="whatsapp",
        error_type=alert.kind,
        message=texts.fill(f"alert.{alert.kind}.what", alert.values),
        occurred_at=event.occurred_at,
        correlation_id=event.correlation_id,
        alert=alert,
    )
    reported = await report(deps, info)
    if reported.first_time:
        deps.metrics.alerts.labels(kind=alert.kind).inc()
        log.info(
            "operator alert",
            extra=fields(kind=alert.kind, event_id=event.event_id, mailed=reported.mailed),
        )
