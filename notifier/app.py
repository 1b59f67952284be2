"""The notifier's aiohttp application: ops endpoints, the bus consumer and the digest flusher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from notifier.handlers import ROUTING_KEYS, Clock, Notifier, bus_handler, run_flusher
from notifier.mailer import IdentityAdmin, Mailer, SesMailer
from notifier.metrics import Metrics
from notifier.pacing import Pacer
from notifier.settings import Settings
from notifier.templates import Texts, load_texts, zone
from shared.bus import QueueSpec
from shared.events import utcnow
from shared.logs import fields
from shared.ops import ReadinessCheck, add_ops_routes, service_registry
from shared.profiles import Profiles, load_profiles
from shared.service import BUS_KEY, POOL_KEY, bus_context, database_context

log = logging.getLogger("mensajero.notifier")

NOTIFIER_KEY = web.AppKey("notifier", Notifier)
METRICS_KEY = web.AppKey("notifier_metrics", Metrics)
SERVICE = "notifier"


def queue_spec() -> QueueSpec:
    return QueueSpec(service=SERVICE, routing_keys=ROUTING_KEYS)


def sender_identities(settings: Settings, profiles: Profiles) -> list[str]:
    """Every address the notifier sends from."""
    found = [settings.ERROR_FROM_EMAIL, *(p.email_bot for p in profiles.profiles)]
    return sorted(set(found))


async def _create_sandbox_identities(
    admin: IdentityAdmin, identities: list[str], timeout: float
) -> None:
    """Create the sender identities in moto, waiting for it to come up (``make run``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await admin.create_identities(identities)
        except Exception as error:
            if time.monotonic() >= deadline:
                log.warning(
                    "could not create the sandbox sender identities; sends will be rejected",
                    extra=fields(error=str(error) or type(error).__name__),
                )
                return
            await asyncio.sleep(0.5)
            continue
        log.info("sandbox sender identities created", extra=fields(identities=",".join(identities)))
        return


def _notifier_context(
    settings: Settings,
    metrics: Metrics,
    profiles: Profiles,
    texts: Texts,
    mailer: Mailer | None,
    clock: Clock,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            active: Mailer
            if mailer is None:
                active = await stack.enter_async_context(SesMailer.from_settings(settings))
            else:
                active = mailer
            if settings.creates_sandbox_identities and isinstance(active, IdentityAdmin):
                # `make run` with moto's server: create the senders so SES accepts them.
                await _create_sandbox_identities(
                    active, sender_identities(settings, profiles), settings.STARTUP_TIMEOUT_SECONDS
                )
            notifier = Notifier(
                settings=settings,
                pool=app[POOL_KEY],
                bus=app[BUS_KEY],
                mailer=active,
                pacer=Pacer(settings.SES_RATE_PER_SECOND),
                metrics=metrics,
                texts=texts,
                profiles=profiles,
                tz=zone(settings.NOTIFIER_TIMEZONE),
                clock=clock,
            )
            app[NOTIFIER_KEY] = notifier
            consumer = await notifier.bus.consume(
                queue_spec(), bus_handler(notifier), concurrency=settings.NOTIFIER_CONCURRENCY
            )
            stack.push_async_callback(consumer.stop, grace=settings.SHUTDOWN_GRACE_SECONDS)
            flusher = asyncio.create_task(run_flusher(notifier), name="notifier-digest-flusher")
            try:
                yield
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher

    return context


def create_app(
    settings: Settings, *, mailer: Mailer | None = None, clock: Clock | None = None
) -> web.Application:
    """The notifier. ``mailer`` and ``clock`` replace SES and the wall clock (tests)."""
    app = web.Application()
    registry = service_registry("notifier")
    metrics = Metrics(registry)
    app[METRICS_KEY] = metrics
    checks: dict[str, ReadinessCheck] = {}
    add_ops_routes(app, registry, checks)
    profiles = load_profiles(settings.COMPANY_PROFILES_FILE)
    texts = load_texts(settings.EMAIL_TEXTS_FILE)
    timeout = settings.STARTUP_TIMEOUT_SECONDS
    app.cleanup_ctx.append(bus_context(settings, timeout))
    app.cleanup_ctx.append(database_context(settings, "notifier", timeout))
    app.cleanup_ctx.append(
        _notifier_context(settings, metrics, profiles, texts, mailer, clock or utcnow)
    )
    return app
