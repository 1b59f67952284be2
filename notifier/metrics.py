"""The notifier's metrics, on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from notifier.domain import ALERT_KINDS


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "notifier_emails_sent_total", "Emails SES accepted.", ["kind"], registry=registry
        )
        self.failed = Counter(
            "notifier_emails_failed_total",
            "Send attempts that failed (throttled ones included), by error type.",
            ["kind", "error_type"],
            registry=registry,
        )
        self.suppressed = Counter(
            "notifier_emails_suppressed_total",
            "Recipients skipped because they are on the suppression list.",
            registry=registry,
        )
        self.send_seconds = Histogram(
            "notifier_email_send_seconds",
            "Time of one SES send call.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.errors_received = Counter(
            "notifier_error_occurrences_total",
            "Error occurrences received (each counted in a report or a digest).",
            registry=registry,
        )
        self.errors_folded = Counter(
            "notifier_error_occurrences_folded_total",
            "Error occurrences folded into a digest instead of a mail of their own.",
            registry=registry,
        )
        self.skipped = Counter(
            "notifier_emails_skipped_total",
            "Emails not sent for a reason other than suppression (e.g. no recipients).",
            ["kind", "reason"],
            registry=registry,
        )
        self.alerts = Counter(
            "notifier_operator_alerts_total",
            "Meta's signals that need the operators (account, number quality, templates), each"
            " mailed or folded into a digest.",
            ["kind"],
            registry=registry,
        )
        for kind in ALERT_KINDS:  # each from 0, so that an alert rule sees the first one
            self.alerts.labels(kind=kind)
        self.addresses_suppressed = Counter(
            "notifier_addresses_suppressed_total",
            "Addresses added to the suppression list.",
            ["reason"],
            registry=registry,
        )
