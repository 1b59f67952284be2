"""The error report mail and the digest mail (of errors and alerts), to the operators
(``ERROR_LOG_EMAIL``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo

from notifier.alert_mail import alert_rows, alert_title, explain
from notifier.body import Body, Rendered, details_json
from notifier.domain import Alert, DigestEntry, ErrorInfo
from notifier.texts import Texts, number, when


def render_error(info: ErrorInfo, texts: Texts, tz: tzinfo) -> Rendered:
    t = texts.get
    subject = t("error.subject", service=info.service, error_type=info.error_type)
    body = Body().paragraph(t("error.intro", service=info.service))
    body.table(
        [
            *_what(info, texts),
            (t("label.correlation_id"), info.correlation_id),
            (t("label.first_at"), when(info.occurred_at, tz)),
            (t("label.last_at"), when(info.occurred_at, tz)),
            (t("label.occurrences"), number(1)),
            (t("label.details"), details_json(info.details)),
        ]
    )
    body.paragraph(t("error.footer"))
    return body.rendered(subject)


def _what(error: ErrorInfo | DigestEntry, texts: Texts) -> list[tuple[str, str | None]]:
    """The rows that say which error it is."""
    t = texts.get
    return [
        (t("label.service"), error.service),
        (t("label.error_type"), error.error_type),
        (t("label.message"), error.message),
        (t("label.meta_code"), str(error.meta_code) if error.meta_code is not None else None),
        (t("label.phone_number_id"), error.phone_number_id),
    ]


def render_digest(entries: Sequence[DigestEntry], texts: Texts, tz: tzinfo) -> Rendered:
    t = texts.get
    if len(entries) == 1:
        subject, body = _one(entries[0], texts, tz)
    else:
        total = sum(entry.occurrences for entry in entries)
        many = {"errors": number(len(entries)), "count": number(total), "times": texts.times(total)}
        kind = "notices" if any(entry.alert for entry in entries) else "many"
        subject = t(f"digest.subject.{kind}", **many)
        body = Body().paragraph(t(f"digest.intro.{kind}", **many))
    for entry in entries:
        if len(entries) > 1:
            title = alert_title(entry.alert, texts) if entry.alert else None
            body.heading(title or f"{entry.service}: {entry.error_type}")
        _entry(body, entry, texts, tz)
    body.paragraph(t("digest.footer"))
    return body.rendered(subject)


def _one(only: DigestEntry, texts: Texts, tz: tzinfo) -> tuple[str, Body]:
    t = texts.get
    kind = "one" if only.alert is None else "alert"
    title = alert_title(only.alert, texts) if only.alert else None
    subject = t(
        f"digest.subject.{kind}",
        service=only.service,
        error_type=only.error_type,
        title=title,
        count=number(only.occurrences),
        times=texts.times(only.occurrences),
    )
    intro = t(
        f"digest.intro.{kind}",
        count=number(only.occurrences),
        times=texts.times(only.occurrences),
        first=when(only.first_at, tz),
        last=when(only.last_at, tz),
    )
    return subject, Body().paragraph(intro)


def _entry(body: Body, entry: DigestEntry, texts: Texts, tz: tzinfo) -> None:
    if entry.alert is not None:
        _alert_entry(body, entry, entry.alert, texts, tz)
        return
    t = texts.get
    body.table(
        [
            *_what(entry, texts),
            (t("label.occurrences"), number(entry.occurrences)),
            (t("label.first_at"), when(entry.first_at, tz)),
            (t("label.last_at"), when(entry.last_at, tz)),
            (t("label.correlation_ids"), ", ".join(entry.correlation_ids) or None),
        ]
    )
    _reported(body, entry, texts)


def _alert_entry(body: Body, entry: DigestEntry, alert: Alert, texts: Texts, tz: tzinfo) -> None:
    t = texts.get
    body.table(
        [
            *alert_rows(alert, texts),
            (t("label.occurrences"), number(entry.occurrences)),
            (t("label.first_at"), when(entry.first_at, tz)),
            (t("label.last_at"), when(entry.last_at, tz)),
        ]
    )
    _reported(body, entry, texts)
    explain(body, alert, texts)


def _reported(body: Body, entry: DigestEntry, texts: Texts) -> None:
    if entry.reported:
        reported, unreported = number(entry.reported), number(entry.unreported)
        body.paragraph(texts.get("digest.reported", reported=reported, unreported=unreported))
