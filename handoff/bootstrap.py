"""Handoff's composition root: the whole object graph, built without I/O (cosmicpython's
``bootstrap``). Production (``handoff.app``) and the tests build through it; the tests replace
the edges through :class:`Adapters`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from handoff.config import HandoffConfig
from handoff.feed import FeedQueue
from handoff.handlers import TABLE, Clock, Deps, fire_due_timers, refresh_gauges
from handoff.metrics import HandoffMetrics
from handoff.postgres import PgRepository
from handoff.repository import ConcurrentUpdate, Repository
from handoff.settings import Settings
from shared.bus import Bus
from shared.db import Connection
from shared.events import utcnow
from shared.ops import service_registry
from shared.outbox import Outbox
from shared.partitions import PartitionLeases
from shared.profiles import load_profiles
from shared.resources import BrokerConnection, Database
from shared.retention import retention_loop
from shared.runner import Loop, Service


@dataclass(frozen=True)
class Adapters:
    """Handoff's edges: the clock, and its repository on a transaction's connection."""

    clock: Clock = utcnow
    repository: Callable[[Connection], Repository] = PgRepository


def bootstrap(settings: Settings, adapters: Adapters | None = None) -> Service:
    """Raises ProfileError (the process exits 2) when COMPANY_PROFILES_FILE is unusable."""
    edges = adapters or Adapters()
    registry = service_registry("handoff")
    bus = Bus(settings.RABBITMQ_URL, settings.BUS_PREFIX, name="handoff")
    broker = BrokerConnection(bus, settings.STARTUP_TIMEOUT_SECONDS)
    database = Database.for_service(settings, "handoff")
    poll = settings.HANDOFF_TIMER_POLL_SECONDS
    outbox = Outbox(
        database,
        bus,
        conflicts=(ConcurrentUpdate,),
        idle_seconds=poll,
        stale_after=settings.HANDOFF_OUTBOX_RELAY_AFTER_SECONDS,
    )
    leases = PartitionLeases(
        settings.DATABASE_URL,
        settings.db_schema,
        TABLE.queue,
        settings.HANDOFF_PARTITIONS,
        grace=settings.SHUTDOWN_GRACE_SECONDS,
    )
    deps = Deps(
        config=HandoffConfig.from_settings(settings, load_profiles(settings.COMPANY_PROFILES_FILE)),
        outbox=outbox,
        metrics=HandoffMetrics(registry),
        clock=edges.clock,
        repository=edges.repository,
    )
    return Service(
        name="handoff",
        bus=bus,
        registry=registry,
        resources=[broker, database, FeedQueue(bus), outbox, leases],
        subscriptions=[
            TABLE.bind(deps, concurrency=settings.HANDOFF_CONCURRENCY, leases=leases),
        ],
        loops=[
            Loop(
                "handoff-partitions", settings.HANDOFF_PARTITION_BALANCE_SECONDS, leases.rebalance
            ),
            Loop("handoff-timers", poll, partial(fire_due_timers, deps)),
            Loop("handoff-gauges", poll, partial(refresh_gauges, deps)),
            retention_loop(database, settings),
        ],
        checks={"rabbitmq": broker.ready, "postgresql": database.ready},
        shutdown_grace=settings.SHUTDOWN_GRACE_SECONDS,
    )
