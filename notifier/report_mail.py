"""The error report mail and the digest mail, to the operators (``ERROR_LOG_EMAIL``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo

from notifier.body import Body, Rendered, details_json
from notifier.domain import DigestEntry, ErrorInfo
from notifier.texts import Texts, number, when


def render_error(info: ErrorInfo, texts: Texts, tz: tzinfo) -> Rendered:
    t = texts.get
    subject = t("error.subject", service=info.service, error_type=info.error_type)
    body = Body().paragraph(t("error.intro", service=info.service))
    body.table(
        [
            (t("label.service"), info.service),
            (t("label.error_type"), info.error_type),
            (t("label.message"), info.message),
            (t("label.meta_code"), str(info.meta_code) if info.meta_code is not None else None),
            (t("label.phone_number_id"), info.phone_number_id),
            (t("label.correlation_id"), info.correlation_id),
            (t("label.first_at"), when(info.occurred_at, tz)),
            (t("label.last_at"), when(info.occurred_at, tz)),
            (t("label.occurrences"), number(1)),
            (t("label.details"), details_json(info.details)),
        ]
    )
    body.paragraph(t("error.footer"))
    return body.rendered(subject)


def render_digest(entries: Sequence[DigestEntry], texts: Texts, tz: tzinfo) -> Rendered:
    t = texts.get
    if len(entries) == 1:
        subject, body = _one(entries[0], texts, tz)
    else:
        total = sum(entry.occurrences for entry in entries)
        many = {"errors": number(len(entries)), "count": number(total), "times": texts.times(total)}
        subject = t("digest.subject.many", **many)
        body = Body().paragraph(t("digest.intro.many", **many))
    for entry in entries:
        if len(entries) > 1:
            body.heading(f"{entry.service}: {entry.error_type}")
        _entry(body, entry, texts, tz)
    body.paragraph(t("digest.footer"))
    return body.rendered(subject)


def _one(only: DigestEntry, texts: Texts, tz: tzinfo) -> tuple[str, Body]:
    t = texts.get
    subject = t(
        "digest.subject.one",
        service=only.service,
        error_type=only.error_type,
        count=number(only.occurrences),
        times=texts.times(only.occurrences),
    )
    intro = t(
        "digest.intro.one",
        count=number(only.occurrences),
        times=texts.times(only.occurrences),
        first=when(only.first_at, tz),
        last=when(only.last_at, tz),
    )
    return subject, Body().paragraph(intro)


def _entry(body: Body, entry: DigestEntry, texts: Texts, tz: tzinfo) -> None:
    t = texts.get
    body.table(
        [
            (t("label.service"), entry.service),
            (t("label.error_type"), entry.error_type),
            (t("label.message"), entry.message),
            (t("label.meta_code"), str(entry.meta_code) if entry.meta_code is not None else None),
            (t("label.phone_number_id"), entry.phone_number_id),
            (t("label.occurrences"), number(entry.occurrences)),
            (t("label.first_at"), when(entry.first_at, tz)),
            (t("label.last_at"), when(entry.last_at, tz)),
            (t("label.correlation_ids"), ", ".join(entry.correlation_ids) or None),
        ]
    )
    if entry.reported:
        reported = number(entry.reported)
        body.paragraph(t("digest.reported", reported=reported, unreported=number(entry.unreported)))
