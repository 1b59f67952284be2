"""The sender service: consumes send commands and status webhooks, talks to the Graph API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from sender.graph import AiohttpGraphClient, GraphClient
from sender.handlers import Deps, SenderConfig, handle_send, handle_status
from sender.metrics import SenderMetrics
from sender.pacing import Circuits, Pacers, PairLimiter
from sender.settings import Settings
from sender.store import PRUNING, PostgresStore
from shared.batching import HeldConnections
from shared.bus import Consumer, Delivery, QueueSpec
from shared.events import Event, MessageStatus, SendMessage
from shared.logs import fields
from shared.ops import add_ops_routes, service_registry
from shared.outbox import Outbox
from shared.service import BUS_KEY, DATABASE_KEY, POOL_KEY, bus_context, database_context

log = logging.getLogger("mensajero.sender")

SETTINGS_KEY = web.AppKey("sender_settings", Settings)
METRICS_KEY = web.AppKey("sender_metrics", SenderMetrics)
DEPS_KEY = web.AppKey("sender_deps", Deps)
# Tests may swap the Graph API adapter (a factory from the settings).
GraphFactory = Callable[[Settings], GraphClient]
GRAPH_FACTORY_KEY: web.AppKey[GraphFactory] = web.AppKey("sender_graph_factory")

SEND_QUEUE = "sender"
STATUS_QUEUE = "sender-status"
STATUS_RETRY_TIERS_MS = (500, 2_000, 10_000)


def send_queue_spec(settings: Settings) -> QueueSpec:
    return QueueSpec(
        service=SEND_QUEUE,
        routing_keys=[SendMessage.TYPE],
        retry_tiers_ms=settings.SENDER_RETRY_TIERS_MS,
    )


def status_queue_spec(settings: Settings) -> QueueSpec:
    tiers = tuple(sorted({min(t, 10_000) for t in settings.SENDER_RETRY_TIERS_MS[:4]}))
    return QueueSpec(
        service=STATUS_QUEUE,
        routing_keys=[MessageStatus.TYPE],
        retry_tiers_ms=tiers or STATUS_RETRY_TIERS_MS,
    )


def config_from(settings: Settings) -> SenderConfig:
    return SenderConfig(
        default_number=settings.META_WA_PHONE_NUMBER_ID,
        validity_seconds=settings.SENDER_VALIDITY_SECONDS,
        # Long enough for the pacing wait and the request; a crashed try is taken over after.
        lease_seconds=settings.SENDER_REQUEST_TIMEOUT_SECONDS * 2
        + settings.SENDER_LEASE_EXTRA_SECONDS,
        backoff_base=settings.SENDER_BACKOFF_BASE_SECONDS,
        backoff_max=settings.SENDER_BACKOFF_MAX_SECONDS,
        pair_backoff_unit=settings.SENDER_PAIR_BACKOFF_SECONDS,
        probe_seconds=settings.SENDER_CIRCUIT_PROBE_SECONDS,
        orphan_seconds=settings.SENDER_STATUS_ORPHAN_SECONDS,
        unknown_outcome_seconds=settings.SENDER_UNKNOWN_OUTCOME_SECONDS,
        request_timeout=settings.SENDER_REQUEST_TIMEOUT_SECONDS,
        media_max_bytes=settings.SENDER_MEDIA_MAX_BYTES,
    )


def _aiohttp_graph(settings: Settings) -> GraphClient:
    return AiohttpGraphClient(
        settings.graph_base,
        settings.META_WA_ACCESS_TOKEN,
        timeout=settings.SENDER_REQUEST_TIMEOUT_SECONDS,
        connections=settings.SENDER_CONCURRENCY,
    )


def sender_context(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        bus, pool = app[BUS_KEY], app[POOL_KEY]
        held = HeldConnections(pool)
        outbox = Outbox(app[DATABASE_KEY], bus, held=held, workers=3)
        store = PostgresStore(pool, held=held, outbox_written=outbox.written)
        graph = app.get(GRAPH_FACTORY_KEY, _aiohttp_graph)(settings)
        if isinstance(graph, AiohttpGraphClient):
            await graph.start()
        metrics = app[METRICS_KEY]
        await outbox.start()
        circuits = Circuits(settings.SENDER_CIRCUIT_PROBE_SECONDS)
        for number in await store.open_circuits():
            # Left open by an earlier run: probe at once (the token may have been renewed).
            circuit = circuits.for_number(number)
            circuit.token_failed()
            circuit.next_probe_at = 0.0
            metrics.circuit.labels(number).set(circuit.value)
        deps = Deps(
            graph=graph,
            store=store,
            publish=outbox.publish,
            pacers=Pacers(
                store,
                settings.rate_for,
                settings.SENDER_RATE_BATCH_SECONDS,
                on_missed=lambda number: metrics.missed_slots.labels(number).inc(),
                burst_seconds=settings.SENDER_RATE_BURST_SECONDS,
            ),
            pairs=PairLimiter(settings.SENDER_PAIR_BURST, settings.SENDER_PAIR_INTERVAL_SECONDS),
            circuits=circuits,
            metrics=metrics,
            config=config_from(settings),
        )
        app[DEPS_KEY] = deps

        async def on_send(event: Event, delivery: Delivery) -> None:
            if not isinstance(event, SendMessage):
                return
            await handle_send(deps, event, delivery.attempt)

        async def on_status(event: Event, delivery: Delivery) -> None:
            if not isinstance(event, MessageStatus):
                return
            await handle_status(deps, event, delivery.attempt)

        def recipient_key(event: Event) -> str | None:
            # One conversation's messages go out in order (within a replica).
            if isinstance(event, SendMessage):
                return f"{event.phone_number_id or ''}:{event.to}"
            return None

        consumers: list[Consumer] = [
            await bus.consume(
                status_queue_spec(settings),
                on_status,
                concurrency=settings.SENDER_STATUS_CONCURRENCY,
                # A status that races its message's log row is retried for a while (bounded
                # by SENDER_STATUS_ORPHAN_SECONDS in the handler, not by a count).
                max_attempts=1_000,
            ),
            await bus.consume(
                send_queue_spec(settings),
                on_send,
                concurrency=settings.SENDER_CONCURRENCY,
                key=recipient_key,
                # The validity period, not a count, decides when a message gives up.
                max_attempts=1_000_000_000,
            ),
        ]
        log.info(
            "sender consuming",
            extra=fields(
                number=settings.META_WA_PHONE_NUMBER_ID,
                rate=settings.SENDER_RATE_PER_SECOND,
                graph=settings.META_GRAPH_URL,
            ),
        )
        yield
        for consumer in reversed(consumers):
            await consumer.stop(grace=settings.SHUTDOWN_GRACE_SECONDS)
        await deps.pacers.close()
        await outbox.close()
        await held.close()
        if isinstance(graph, AiohttpGraphClient):
            await graph.close()

    return context


def create_app(
    settings: Settings, *, graph_factory: Callable[[Settings], GraphClient] | None = None
) -> web.Application:
    app = web.Application()
    registry = service_registry("sender")
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = SenderMetrics(registry)
    if graph_factory is not None:
        app[GRAPH_FACTORY_KEY] = graph_factory
    add_ops_routes(app, registry, {})
    app.cleanup_ctx.append(bus_context(settings, settings.STARTUP_TIMEOUT_SECONDS))
    app.cleanup_ctx.append(
        database_context(settings, "sender", settings.STARTUP_TIMEOUT_SECONDS, pruning=PRUNING)
    )
    app.cleanup_ctx.append(sender_context(settings))
    return app
