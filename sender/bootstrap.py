"""The sender's composition root: the whole object graph, built without I/O (cosmicpython's
``bootstrap``). Production (``sender.app``) and the tests build through it; the tests replace
the edges through :class:`Adapters`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sender.circuits import Circuit, Circuits
from sender.config import SenderConfig
from sender.deps import Clock, Deps
from sender.graph import AiohttpGraphClient, GraphClient
from sender.handlers import subscriptions
from sender.metrics import SenderMetrics
from sender.pacing import Pacers, PairLimiter
from sender.pg_store import PostgresStore
from sender.policy import CIRCUIT_KINDS
from sender.settings import Settings
from sender.signals import refresh_state
from sender.startup import StartupReport
from sender.store import PRUNING
from sender.template_setup import check_at_meta, configured_templates
from shared.batching import HeldConnections
from shared.bus import Bus
from shared.events import utcnow
from shared.ops import service_registry
from shared.outbox import Outbox
from shared.profiles import load_profiles
from shared.resources import BrokerConnection, Database
from shared.retention import retention_loop
from shared.runner import Loop, Service

# Result events are published by this many relay workers (a send's MessageSent is written with
# its acceptance; the relay gathers rows into batches, confirms pipelined).
RELAY_WORKERS = 3


@dataclass(frozen=True)
class Adapters:
    """The sender's edges: the Graph API (built from the settings) and the clock (validity
    periods, Meta's "not before", the Graph version's expiry)."""

    graph: Callable[[Settings], GraphClient] = AiohttpGraphClient.from_settings
    clock: Clock = utcnow


def bootstrap(settings: Settings, adapters: Adapters | None = None) -> Service:
    """Raises ProfileError (the process exits 2) when COMPANY_PROFILES_FILE is unusable."""
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

    def report(number: str, kind: str, circuit: Circuit) -> None:
        metrics.circuit_state(number, kind, circuit.value)

    circuits = Circuits(
        settings.SENDER_CIRCUIT_PROBE_SECONDS, kinds=CIRCUIT_KINDS, store=store, report=report
    )
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
        resources=[
            StartupReport(settings, lambda: edges.clock().date()),
            broker,
            database,
            held,
            store,
            outbox,
            circuits,
            graph,
            pacers,
        ],
        subscriptions=subscriptions(deps, settings),
        loops=_loops(settings, deps, database),
        checks={"rabbitmq": broker.ready, "postgresql": database.ready},
        shutdown_grace=settings.SHUTDOWN_GRACE_SECONDS,
    )


def _loops(settings: Settings, deps: Deps, database: Database) -> list[Loop]:
    """Retention, the template states and the database-wide gauges, and (with an account id)
    the check of the configured templates at Meta."""
    loops = [
        retention_loop(database, settings, PRUNING),
        Loop("sender-state", settings.SENDER_STATE_REFRESH_SECONDS, partial(refresh_state, deps)),
    ]
    if settings.META_WA_BUSINESS_ACCOUNT_ID:
        wanted = configured_templates(load_profiles(settings.COMPANY_PROFILES_FILE))
        check = partial(check_at_meta, deps, settings.META_WA_BUSINESS_ACCOUNT_ID, wanted)
        loops.append(Loop("template-check", settings.SENDER_TEMPLATE_CHECK_SECONDS, check))
    return loops
