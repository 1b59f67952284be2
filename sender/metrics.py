"""The sender's metrics, on the app's own registry.

``whatsapp_messages_{sent,delivered,read,failed}_total`` count each message once per status,
when its log row moves forward: ``sent`` comes from Meta's ``sent`` status webhook (a ``delivered``
or ``read`` that arrives first also counts the steps it implies), not from the API's acceptance,
which ``whatsapp_messages_accepted_total`` counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sender.policy import CIRCUIT_KINDS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)


@dataclass(frozen=True, slots=True)
class NumberMetrics:
    """One number's children of the metrics every send touches: ``labels()`` (a lock, a tuple,
    a dict lookup) cost more than the observations themselves, several times per message."""

    phone_number_id: str
    queue_age: Histogram
    circuits: dict[str, Gauge]  # by kind
    number_wait: Histogram
    send_latency: Histogram
    _accepted: Counter
    accepted_by_kind: dict[str, Counter] = field(default_factory=dict)

    def circuit(self, kind: str) -> Gauge:
        return self.circuits[kind]

    def accepted(self, kind: str) -> Counter:
        child = self.accepted_by_kind.get(kind)
        if child is None:
            child = self._accepted.labels(self.phone_number_id, kind)
            self.accepted_by_kind[kind] = child
        return child


class SenderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._numbers: dict[str, NumberMetrics] = {}
        self._outcomes(registry)
        self._sending(registry)
        self._platform(registry)

    def _outcomes(self, registry: CollectorRegistry) -> None:
        """What became of the messages: counted once each."""
        labels = ["phone_number_id", "kind"]
        self.sent = Counter(
            "whatsapp_messages_sent", "Messages Meta reported sent", labels, registry=registry
        )
        self.delivered = Counter(
            "whatsapp_messages_delivered",
            "Messages Meta reported delivered",
            labels,
            registry=registry,
        )
        self.read = Counter(
            "whatsapp_messages_read", "Messages Meta reported read", labels, registry=registry
        )
        self.failed = Counter(
            "whatsapp_messages_failed",
            "Messages that ended failed (by Meta's code, or validation/expired)",
            [*labels, "error_code"],
            registry=registry,
        )
        self.accepted = Counter(
            "whatsapp_messages_accepted",
            "Send requests the Graph API accepted",
            labels,
            registry=registry,
        )
        self.duplicates = Counter(
            "whatsapp_send_duplicates",
            "Send commands seen again after they were settled (redelivered or re-published)",
            ["phone_number_id"],
            registry=registry,
        )
        self.duplicated = Counter(
            "whatsapp_messages_duplicated",
            "Send commands Meta accepted twice: the first answer was lost (a timeout, a dropped"
            " connection, a crash) and no status told of it before the command was sent again",
            labels,
            registry=registry,
        )

    def _sending(self, registry: CollectorRegistry) -> None:
        """How sending goes: timings, waits, retries, circuits."""
        self.send_latency = Histogram(
            "whatsapp_send_latency_seconds",
            "Duration of the Graph API send call",
            ["phone_number_id"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "whatsapp_send_retries",
            "Sends put back for a later try, by reason",
            ["phone_number_id", "reason"],
            registry=registry,
        )
        self.rate_limit_wait = Histogram(
            "whatsapp_rate_limit_wait_seconds",
            "Time a send waited for its slot (limit=number) or was held (limit=pair)",
            ["phone_number_id", "limit"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.missed_slots = Counter(
            "whatsapp_pacing_missed_slots",
            "Send slots given up because the process woke too late to use them (a busy CPU)",
            ["phone_number_id"],
            registry=registry,
        )
        self.queue_age = Histogram(
            "whatsapp_send_queue_age_seconds",
            "Age of a send command when the sender takes it (from its occurred_at)",
            ["phone_number_id"],
            buckets=AGE_BUCKETS,
            registry=registry,
        )
        self.circuit = Gauge(
            "whatsapp_circuit_state",
            "Circuits per number and kind (circuit=token: its access token; payment: the"
            " account's payment method): 0 closed, 1 open (holding messages), 2 probing",
            ["phone_number_id", "circuit"],
            registry=registry,
        )

    def _platform(self, registry: CollectorRegistry) -> None:
        """What Meta says of the account, its templates and its prices."""
        self.billable = Counter(
            "whatsapp_messages_billable",
            "Messages by what Meta's statuses say they cost (pricing category and type), once"
            " per message",
            ["phone_number_id", "category", "pricing_type"],
            registry=registry,
        )
        self.account_restricted = Gauge(
            "whatsapp_account_restricted",
            "1 while the WhatsApp Business Account is restricted, disabled, in violation or"
            " offboarded (database-wide: the same on every replica, use max)",
            registry=registry,
        )
        self.template_status = Gauge(
            "whatsapp_template_status",
            "1 for each template's current status at Meta (database-wide: the same on every"
            " replica, use max)",
            ["name", "language", "status"],
            registry=registry,
        )
        self._template_labels: set[tuple[str, str, str]] = set()

    def set_template_statuses(self, statuses: Iterable[tuple[str, str, str]]) -> None:
        """Exactly these (name, language, status) at 1; the ones no longer true go."""
        current = set(statuses)
        for labels in self._template_labels - current:
            self.template_status.remove(*labels)
        for labels in current:
            self.template_status.labels(*labels).set(1)
        self._template_labels = current

    def circuit_state(self, phone_number_id: str, kind: str, value: float) -> None:
        self.number(phone_number_id).circuit(kind).set(value)

    def number(self, phone_number_id: str) -> NumberMetrics:
        found = self._numbers.get(phone_number_id)
        if found is None:
            # At 0 from the number's first message, so a rate() over it has a series to show.
            self.missed_slots.labels(phone_number_id)
            found = self._numbers[phone_number_id] = NumberMetrics(
                phone_number_id=phone_number_id,
                queue_age=self.queue_age.labels(phone_number_id),
                circuits={k: self.circuit.labels(phone_number_id, k) for k in CIRCUIT_KINDS},
                number_wait=self.rate_limit_wait.labels(phone_number_id, "number"),
                send_latency=self.send_latency.labels(phone_number_id),
                _accepted=self.accepted,
            )
        return found
