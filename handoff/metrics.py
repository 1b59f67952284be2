"""Handoff's metrics, on the app's own registry."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from handoff.outcome import Fact

_WAIT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class HandoffMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requested = Counter(
            "handoff_requested_total",
            "Requests for a human, by trigger (button, phrase, command).",
            ["trigger"],
            registry=registry,
        )
        # Counted in the database: the same on every replica.
        self.active = Gauge(
            "handoff_active",
            "Cases an agent is attending now. Database-wide: every replica reports the same "
            "value (aggregate with max, not sum).",
            registry=registry,
        )
        self.waiting = Gauge(
            "handoff_waiting",
            "Cases waiting for an agent to claim them. Database-wide: every replica reports the "
            "same value (aggregate with max, not sum).",
            registry=registry,
        )
        self.wait_seconds = Histogram(
            "handoff_wait_seconds",
            "From the request to an agent's claim.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.first_response_seconds = Histogram(
            "handoff_first_response_seconds",
            "From the request to the agent's first message to the customer.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.ended = Counter(
            "handoff_ended_total", "Cases ended, by end reason.", ["reason"], registry=registry
        )
        self.relays = Counter(
            "handoff_relays_total",
            "Messages relayed, by direction (to_agent, to_customer).",
            ["direction"],
            registry=registry,
        )
        self.csat = Counter(
            "handoff_csat_total",
            "Customers' ratings of a closed case, by profile and score (3 best, 1 worst).",
            ["profile", "score"],
            registry=registry,
        )
        self.transfers = Counter(
            "handoff_transfers_total",
            "Cases moved to another agent, by reason (transfer: /pasar; reply_timeout: a "
            "colleague took a case whose customer waited too long).",
            ["reason"],
            registry=registry,
        )
        self.timers_fired = Counter(
            "handoff_timers_fired_total", "Timers fired, by kind.", ["kind"], registry=registry
        )

    def apply(self, facts: Iterable[Fact]) -> None:
        for fact in facts:
            if fact.name == "requested":
                self.requested.labels(fact.label).inc()
            elif fact.name == "claimed":
                self.wait_seconds.observe(fact.value)
            elif fact.name == "first_response":
                self.first_response_seconds.observe(fact.value)
            elif fact.name == "ended":
                self.ended.labels(fact.label).inc()
            elif fact.name == "relay":
                self.relays.labels(fact.label).inc()
            elif fact.name == "csat":
                self.csat.labels(fact.label, str(int(fact.value))).inc()
            elif fact.name == "transferred":
                self.transfers.labels(fact.label).inc()

    def set_counts(self, counts: dict[str, int]) -> None:
        self.waiting.set(counts.get("queued", 0))
        self.active.set(counts.get("active", 0))
