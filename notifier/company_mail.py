"""The mail to a company profile: a customer nobody attended, and a closed case's transcript."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from notifier.body import Body, Rendered
from notifier.texts import Texts, when
from shared.events import (
    CaseHandler,
    HandoffClosed,
    HandoffUnattended,
    Identity,
    TranscriptLine,
)
from shared.profiles import CompanyProfile


def customer_name(customer: Identity, texts: Texts) -> str:
    """The name and how to recognise them: the phone, or where Meta hides it the username
    (``@ana``), else the BSUID."""
    handle = customer.handle
    if customer.name and handle:
        return f"{customer.name} ({handle})"
    return customer.name or handle or texts.get("unknown_customer")


def _transcript_lines(lines: Sequence[TranscriptLine], texts: Texts, tz: tzinfo) -> list[str]:
    return [
        f"[{line.at.astimezone(tz).strftime('%d/%m %H:%M')}] "
        f"{texts.get('author.' + line.author)}: {line.text}"
        for line in lines
    ]


def _values(
    event: HandoffUnattended | HandoffClosed, profile: CompanyProfile, texts: Texts
) -> dict[str, str]:
    return {
        "company": profile.name,
        "case_code": event.case_code,
        "customer": customer_name(event.customer, texts),
    }


def _case(event: HandoffUnattended | HandoffClosed, texts: Texts) -> list[tuple[str, str | None]]:
    """The rows that say whose case it is."""
    customer = event.customer
    return [
        (texts.get("label.customer"), customer.name),
        (texts.get("label.phone"), customer.phone),
        (
            texts.get("label.username"),
            f"@{customer.username.lstrip('@')}" if customer.username else None,
        ),
        (texts.get("label.user_id"), None if customer.phone else customer.user_id),
        (texts.get("label.case_code"), event.case_code),
    ]


def render_unattended(
    event: HandoffUnattended, profile: CompanyProfile, texts: Texts, tz: tzinfo
) -> Rendered:
    mine = texts.for_profile(profile)
    t = mine.get
    values = _values(event, profile, mine)
    subject = t(f"handoff.{event.reason}.subject", **values)
    body = Body().paragraph(t(f"handoff.{event.reason}.intro", **values))
    body.table(
        [
            *_case(event, mine),
            (t("label.requested_at"), when(event.occurred_at, tz)),
        ]
    )
    body.paragraph(t("handoff.action"))
    if event.last_messages:
        body.heading(t("handoff.last_messages"))
        body.lines(_transcript_lines(event.last_messages, mine, tz))
    body.paragraph(t("signature"))
    return body.rendered(subject)


def _handlers(handlers: Sequence[CaseHandler], texts: Texts, tz: tzinfo) -> str | None:
    """Who handled the case, in order: "Ana (+54...) 10:02–10:15 → Beto (+54...) 10:15–10:40"."""

    def hour(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%H:%M") if moment else "?"

    shown = []
    for handler in handlers:
        name = handler.agent_name or handler.agent_phone
        who = name if name == handler.agent_phone else f"{name} ({handler.agent_phone})"
        shown.append(f"{who} {hour(handler.since)}–{hour(handler.until)}")
    return " → ".join(shown) or None


def _rating(event: HandoffClosed, texts: Texts) -> str | None:
    if event.rating is None:
        return None
    label = event.rating_label or str(event.rating)
    return texts.get("rating.value", label=label, score=event.rating)


def render_transcript(
    event: HandoffClosed, profile: CompanyProfile, texts: Texts, tz: tzinfo
) -> Rendered:
    mine = texts.for_profile(profile)
    t = mine.get
    values = _values(event, profile, mine)
    subject = t("transcript.subject", **values)
    body = Body().paragraph(t("transcript.intro", **values))
    body.table(
        [
            *_case(event, mine),
            (t("label.agent"), event.agent_phone),
            (t("label.handlers"), _handlers(event.handlers, mine, tz)),
            (t("label.end_reason"), t(f"end_reason.{event.end_reason}")),
            (t("label.rating"), _rating(event, mine)),
            (t("label.last_at"), when(event.occurred_at, tz)),
        ]
    )
    lines = _transcript_lines(event.transcript, mine, tz)
    body.lines(lines or [t("transcript.empty")])
    body.paragraph(t("signature"))
    return body.rendered(subject)
