"""The notifier's composition root: the whole object graph, built without I/O (cosmicpython's
``bootstrap``). Production (``notifier.app``) and the tests build through it; the tests replace
the edges through :class:`Adapters`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from notifier.config import NotifierConfig
from notifier.deps import Clock, Deps
from notifier.handlers import TABLE
from notifier.mailer import Mailer, SenderIdentities, SesMailer
from notifier.metrics import Metrics
from notifier.pacing import Pacer
from notifier.reports import flush_digests
from notifier.repository import PRUNING, PgRepository, Repository
from notifier.settings import Settings
from notifier.texts import load_texts
from shared.bus import Bus
from shared.db import Connection
from shared.events import utcnow
from shared.ops import service_registry
from shared.outbox import Outbox
from shared.profiles import Profiles, load_profiles
from shared.resources import BrokerConnection, Database
from shared.retention import retention_loop
from shared.runner import Loop, Resource, Service

log = logging.getLogger("mensajero.notifier")


@dataclass(frozen=True)
class Adapters:
    """The notifier's edges: the mailer (None: Amazon SES from the settings), the clock, and
    its repository on a connection."""

    mailer: Mailer | None = None
    clock: Clock = utcnow
    repository: Callable[[Connection], Repository] = PgRepository


def sender_identities(settings: Settings, profiles: Profiles) -> list[str]:
    """Every address the notifier sends from."""
    return sorted({settings.ERROR_FROM_EMAIL, *(p.email_bot for p in profiles.profiles)})


def bootstrap(settings: Settings, adapters: Adapters | None = None) -> Service:
    """Raises ProfileError or TextsError (the process exits 2) when COMPANY_PROFILES_FILE or
    EMAIL_TEXTS_FILE is unusable."""
    edges = adapters or Adapters()
    if settings.retention_warning:
        log.warning(settings.retention_warning)
    registry = service_registry("notifier")
    bus = Bus(settings.RABBITMQ_URL, settings.BUS_PREFIX, name="notifier")
    broker = BrokerConnection(bus, settings.STARTUP_TIMEOUT_SECONDS)
    database = Database.for_service(settings, "notifier")
    outbox = Outbox(database, bus)
    profiles = load_profiles(settings.COMPANY_PROFILES_FILE)
    mailer = edges.mailer or SesMailer.from_settings(settings)
    resources: list[Resource] = [broker, database, outbox, mailer]
    if settings.creates_sandbox_identities:
        identities = sender_identities(settings, profiles)
        resources.append(SenderIdentities(mailer, identities, settings.STARTUP_TIMEOUT_SECONDS))
    deps = Deps(
        config=NotifierConfig.from_settings(
            settings, load_texts(settings.EMAIL_TEXTS_FILE), profiles
        ),
        database=database,
        outbox=outbox,
        mailer=mailer,
        pacer=Pacer(settings.SES_RATE_PER_SECOND),
        metrics=Metrics(registry),
        clock=edges.clock,
        repository=edges.repository,
    )
    return Service(
        name="notifier",
        bus=bus,
        registry=registry,
        resources=resources,
        subscriptions=[TABLE.bind(deps, concurrency=settings.NOTIFIER_CONCURRENCY)],
        loops=[
            Loop(
                "notifier-digests",
                settings.DIGEST_FLUSH_INTERVAL_SECONDS,
                partial(flush_digests, deps),
            ),
            retention_loop(database, settings, PRUNING),
        ],
        checks={"rabbitmq": broker.ready, "postgresql": database.ready},
        shutdown_grace=settings.SHUTDOWN_GRACE_SECONDS,
    )
