"""The gateway's Prometheus metrics, on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.ops import queue_depth_gauge

# The endpoint label of each webhook route, for a failure counted outside its handler.
ENDPOINTS = {
    ("GET", "/webhook/whatsapp"): "whatsapp_verify",
    ("POST", "/webhook/whatsapp"): "whatsapp",
    ("POST", "/webhook/ses"): "ses",
}

# Fine enough below 50 ms, where a healthy webhook answers.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gateway_webhook_requests_total",
            "Webhook requests by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.published = Counter(
            "gateway_events_published_total",
            "Events the broker confirmed, by event type.",
            ["type"],
            registry=registry,
        )
        self.unrouted = Counter(
            "gateway_events_unrouted_total",
            "Events no queue was bound for, parked in the gateway's unrouted queue.",
            ["type"],
            registry=registry,
        )
        self.unrouted_waiting = queue_depth_gauge(
            registry,
            "gateway_unrouted_messages",
            "Events parked in the unrouted queue now, waiting for `shared.replay unrouted`. "
            "Broker-wide: every replica reports the same value (aggregate with max, not sum).",
        )
        self.skipped = Counter(
            "gateway_updates_skipped_total",
            "Signed updates not turned into events, by reason (malformed: too broken to become "
            "one; ignored: not a WhatsApp Business Account's) and webhook field (none: outside "
            "any change; other: a field no parser covers; ses: an SES notification).",
            ["reason", "field"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "gateway_webhook_request_seconds",
            "Time from a webhook's arrival to its answer, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.confirm_seconds = Histogram(
            "gateway_publish_confirm_seconds",
            "Time to get every event of one request confirmed by the broker.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.handed_over = Counter(
            "gateway_connections_handed_over_total",
            "Connections the webhook lane handed to aiohttp: a request on them was not a plain "
            "webhook (the ops endpoints, SES, chunked, compressed, ...). Meta's webhooks stay "
            "in the lane; a rise with Meta's traffic means they changed shape (and cost more).",
            registry=registry,
        )
        # Label children resolved once: a label lookup per request is measurable at 4k/s.
        self._request_children: dict[tuple[str, str], Counter] = {}
        self._published_children: dict[str, Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def request(self, endpoint: str, outcome: str, seconds: float) -> None:
        key = (endpoint, outcome)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(endpoint, outcome)
        child.inc()
        latency = self._latency_children.get(endpoint)
        if latency is None:
            latency = self._latency_children[endpoint] = self.request_seconds.labels(endpoint)
        latency.observe(seconds)

    def unforeseen(self, method: str, path: str) -> None:
        """A webhook answered 503 by the guard (a bug): outcome ``error``, for the 5xx alert."""
        endpoint = ENDPOINTS.get((method, path))
        if endpoint is not None:
            self.requests.labels(endpoint, "error").inc()

    def skip(self, reason: str, field: str) -> None:
        """One update not turned into an event (``field``: a label from gateway.parser)."""
        self.skipped.labels(reason, field).inc()

    def events_published(self, event_type: str, count: int = 1) -> None:
        child = self._published_children.get(event_type)
        if child is None:
            child = self._published_children[event_type] = self.published.labels(event_type)
        child.inc(count)
