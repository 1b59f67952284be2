"""The gateway's composition root: the whole object graph, built without I/O (cosmicpython's
``bootstrap``). Production (``gateway.app``) and the tests build through it; the tests replace
the edges through :class:`Adapters`.

The gateway consumes no queue: its service is the broker connection, the publisher (and its
unrouted queue), the feed for integrations, the SNS client and the certificates it fetches,
opened in that order and closed in reverse; its webhook routes use
:class:`gateway.handlers.Deps`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.handlers import Clock, Deps
from gateway.metrics import Metrics
from gateway.publisher import EventPublisher, Publisher, feed
from gateway.settings import Settings
from gateway.sns import CertificateStore
from gateway.sns_http import Fetcher, HttpFetcher
from shared.bus import Bus
from shared.events import utcnow
from shared.ops import service_registry
from shared.resources import BrokerConnection
from shared.runner import Service


@dataclass(frozen=True)
class Adapters:
    """The gateway's edges: where events go (on the bus, within a deadline), how SNS
    certificates and SubscribeURLs are fetched (within a timeout), and the clock."""

    publisher: Callable[[Bus, Metrics, float], EventPublisher] = Publisher
    fetcher: Callable[[float], Fetcher] = HttpFetcher
    clock: Clock = utcnow


@dataclass(frozen=True)
class Gateway:
    service: Service  # what shared.runner opens and closes
    deps: Deps  # what the webhook routes use


def bootstrap(settings: Settings, adapters: Adapters | None = None) -> Gateway:
    edges = adapters or Adapters()
    registry = service_registry("gateway")
    metrics = Metrics(registry)
    bus = Bus(settings.RABBITMQ_URL, settings.BUS_PREFIX, name="gateway")
    broker = BrokerConnection(bus, settings.STARTUP_TIMEOUT_SECONDS)
    publisher = edges.publisher(bus, metrics, settings.PUBLISH_TIMEOUT_SECONDS)
    fetcher = edges.fetcher(settings.SNS_HTTP_TIMEOUT_SECONDS)
    certificates = CertificateStore(
        fetcher.fetch, settings.SNS_CERT_HOST_PATTERN, settings.SNS_TRUSTED_CERT_URL_PREFIXES
    )
    deps = Deps(
        config=GatewayConfig.from_settings(settings),
        publisher=publisher,
        metrics=metrics,
        certificates=certificates,
        fetch=fetcher.fetch,
        clock=edges.clock,
    )
    service = Service(
        name="gateway",
        bus=bus,
        registry=registry,
        resources=[broker, publisher, feed(bus), fetcher, certificates],
        checks={"rabbitmq": broker.ready},
        shutdown_grace=settings.SHUTDOWN_GRACE_SECONDS,
    )
    return Gateway(service, deps)
