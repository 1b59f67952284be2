"""What the notifier reasons about: an occurrence for the operators (an error, or one of Meta's
signals that needs them: an :class:`Alert`), and a digest of identical ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events import ErrorReported, WebhookErrors, stable_id

# Every kind of alert (its texts are alert.<kind>.*; notifier.alerts decides which applies).
ALERT_KINDS = (
    "account.restricted",
    "account.disabled",
    "account.violation",
    "account.offboarded",
    "quality.flagged",
    "quality.limit",
    "template.paused",
    "template.disabled",
    "template.rejected",
    "template.marketing",
)


@dataclass(frozen=True)
class Alert:
    """One of Meta's signals an operator must act on, in words: its ``kind`` (which names its
    texts, ``alert.<kind>.*``) and the facts its mail shows (``label.<fact>``, value), in order.
    Identical alerts (the same kind and facts) fold into one digest."""

    kind: str
    facts: tuple[tuple[str, str], ...] = ()

    @property
    def values(self) -> dict[str, str]:
        return dict(self.facts)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "facts": [list(fact) for fact in self.facts]}

    @classmethod
    def from_json(cls, data: Any) -> Alert | None:
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            return None
        facts = tuple((str(k), str(v)) for k, v in data.get("facts") or ())
        return cls(kind=data["kind"], facts=facts)


@dataclass(frozen=True)
class ErrorInfo:
    """One occurrence for the operators: an ``error.reported`` event, a Meta webhook error, or
    (with ``alert``) one of Meta's signals that needs them."""

    event_id: str
    service: str
    error_type: str
    message: str
    occurred_at: datetime
    meta_code: int | None = None
    phone_number_id: str | None = None
    correlation_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    alert: Alert | None = None

    @property
    def fingerprint(self) -> str:
        if self.alert is not None:
            facts = (f"{name}={value}" for name, value in self.alert.facts)
            return stable_id("alert", self.alert.kind, *facts)
        # The same recipe as ErrorReported.fingerprint, so both sources fold together.
        return stable_id(self.service, self.error_type, str(self.meta_code), self.message)

    @property
    def kind(self) -> str:
        """The kind of its mail (``notifier_emails_sent_total{kind}``)."""
        return "error" if self.alert is None else "alert"

    @classmethod
    def from_event(cls, event: ErrorReported) -> ErrorInfo:
        return cls(
            event_id=event.event_id,
            service=event.service,
            error_type=event.error_type,
            message=event.message,
            occurred_at=event.occurred_at,
            meta_code=event.meta_code,
            phone_number_id=event.phone_number_id,
            correlation_id=event.correlation_id,
            details=dict(event.details),
        )


def from_webhook_errors(event: WebhookErrors) -> list[ErrorInfo]:
    """One occurrence per value-level error Meta sent in a webhook."""
    found = []
    for index, error in enumerate(event.errors):
        message = " - ".join(part for part in (error.title, error.message) if part) or "(sin texto)"
        details: dict[str, Any] = {}
        if error.details:
            details["details"] = error.details
        if error.href:
            details["href"] = error.href
        found.append(
            ErrorInfo(
                event_id=stable_id(event.event_id, "error", str(index)),
                service="whatsapp",
                error_type="WebhookError",
                message=message,
                occurred_at=event.occurred_at,
                meta_code=error.code,
                phone_number_id=event.phone_number_id,
                correlation_id=event.correlation_id,
                details=details,
            )
        )
    return found


@dataclass(frozen=True)
class DigestEntry:
    """Identical errors folded together within a window."""

    digest_id: int
    fingerprint: str
    service: str
    error_type: str
    message: str
    meta_code: int | None
    phone_number_id: str | None
    occurrences: int  # how many times it happened in the window
    reported: int  # how many of those were already mailed on their own
    first_at: datetime
    last_at: datetime
    correlation_ids: tuple[str, ...] = ()
    alert: Alert | None = None

    @property
    def unreported(self) -> int:
        return self.occurrences - self.reported


def plan_digest_mails(due: list[DigestEntry], capacity: int) -> list[list[DigestEntry]]:
    """Group due digests into at most ``capacity`` mails (the last one takes the overflow).

    Digests whose occurrences were all reported already need no mail. Nothing is left out: when
    there are more digests than mails allowed, the last mail lists all the rest.
    """
    pending = [entry for entry in due if entry.unreported > 0]
    if capacity <= 0 or not pending:
        return []
    if len(pending) <= capacity:
        return [[entry] for entry in pending]
    singles = [[entry] for entry in pending[: capacity - 1]]
    return [*singles, pending[capacity - 1 :]]
