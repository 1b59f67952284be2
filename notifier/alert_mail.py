"""The operators' mail on one of Meta's signals: what happened, what it means for the business,
what to do; and the same for an alert in a digest."""

from __future__ import annotations

from datetime import datetime, tzinfo

from notifier.body import Body, Rendered
from notifier.domain import Alert
from notifier.texts import Texts, when


def alert_title(alert: Alert, texts: Texts) -> str:
    return texts.fill(f"alert.{alert.kind}.title", alert.values)


def alert_rows(alert: Alert, texts: Texts) -> list[tuple[str, str | None]]:
    return [(texts.get(f"label.{name}"), value) for name, value in alert.facts]


def explain(body: Body, alert: Alert, texts: Texts) -> None:
    """What it means for the business, and what to do."""
    body.heading(texts.get("alert.meaning"))
    body.paragraph(texts.fill(f"alert.{alert.kind}.meaning", alert.values))
    body.heading(texts.get("alert.action"))
    body.paragraph(texts.fill(f"alert.{alert.kind}.action", alert.values))


def render_alert(alert: Alert, received_at: datetime, texts: Texts, tz: tzinfo) -> Rendered:
    subject = texts.get("alert.subject", title=alert_title(alert, texts))
    body = Body().paragraph(texts.fill(f"alert.{alert.kind}.what", alert.values))
    body.table([*alert_rows(alert, texts), (texts.get("label.received_at"), when(received_at, tz))])
    explain(body, alert, texts)
    body.paragraph(texts.get("alert.footer"))
    return body.rendered(subject)
