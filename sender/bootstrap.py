"""The sender's composition root: the whole object graph, built without I/O (cosmicpython's
``bootstrap``). Production (``sender.app``) and the tests build through it; the tests replace
the edges through :class:`Adapters`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sender.circuits import Circuit, Circuits
from sender.config import SenderConfig
from sender.deps import Clock, Deps
from sender.graph import AiohttpGraphClient, GraphClient
from sender.handlers import subscriptions
from sender.metrics import SenderMetrics
from sender.pacing import Pacers, PairLimiter
from sender.pg_store import PostgresStore
from sender.settings import Settings
from sender.store import PRUNING
from shared.batching import HeldConnections
from shared.bus import Bus
from shared.events import utcnow
from shared.ops import service_registry
from shared.outbox import Outbox
from shared.resources import BrokerConnection, Database
from shared.retention import retention_loop
from shared.runner import Service

# Result events are published by this many relay workers (a send's MessageSent is written with
# its acceptance; the relay gathers rows into batches, confirms pipelined).
RELAY_WORKERS = 3


@dataclass(frozen=True)
class Adapters:
    """The sender's edges: the Graph API (built from the settings) and the clock."""

    graph: Callable[[Settings], GraphClient] = AiohttpGraphClient.from_settings
    clock: Clock = utcnow


def bootstrap(settings: Settings, adapters: Adapters | None = None) -> Service:
    edges = adapters or Adapters()
    registry = service_registry("sender")
    metrics = SenderMetrics(registry)
    bus = Bus(settings.RABBITMQ_URL, settings.BUS_PREFIX, name="sender")
    broker = BrokerConnection(bus, settings.STARTUP_TIMEOUT_SECONDS)
    database = Database.for_service(settings, "sender")
    # Claims, acceptances and result rows are the per-message statements: group-committed on
    # connections kept out of the pool (shared by the store and the outbox).
    held = HeldConnections(lambda: database.pool)
    outbox = Outbox(database, bus, held=held, workers=RELAY_WORKERS)
    store = PostgresStore(database, held=held, outbox_written=outbox.written)
    graph = edges.graph(settings)

    def report(number: str, circuit: Circuit) -> None:
        metrics.circuit.labels(number).set(circuit.value)

    circuits = Circuits(settings.SENDER_CIRCUIT_PROBE_SECONDS, store=store, report=report)
    pacers = Pacers(
        store,
        settings.rate_for,
        settings.SENDER_RATE_BATCH_SECONDS,
        on_missed=lambda number: metrics.missed_slots.labels(number).inc(),
        burst_seconds=settings.SENDER_RATE_BURST_SECONDS,
    )
    deps = Deps(
        graph=graph,
        store=store,
        publish=outbox.publish,
        pacers=pacers,
        pairs=PairLimiter(settings.SENDER_PAIR_BURST, settings.SENDER_PAIR_INTERVAL_SECONDS),
        circuits=circuits,
        metrics=metrics,
        config=SenderConfig.from_settings(settings),
        clock=edges.clock,
    )
    return Service(
        name="sender",
        bus=bus,
        registry=registry,
        # Started in this order, closed in reverse (the pacers' tasks first, the broker last).
        resources=[broker, database, held, store, outbox, circuits, graph, pacers],
        subscriptions=subscriptions(deps, settings),
        loops=[retention_loop(database, settings, PRUNING)],
        checks={"rabbitmq": broker.ready, "postgresql": database.ready},
        shutdown_grace=settings.SHUTDOWN_GRACE_SECONDS,
    )
