"""What every service process shares: resources in ``cleanup_ctx`` and the runner.

A service is an aiohttp application (its ops endpoints, and for the gateway its webhooks) whose
``cleanup_ctx`` opens the database pool, the bus and the consumers, and closes them in reverse.
aiohttp's runner turns SIGTERM/SIGINT into a graceful shutdown: the consumers stop taking
messages, in-flight work finishes within ``SHUTDOWN_GRACE_SECONDS``, then everything closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from aiohttp import web

from shared.bus import Bus, BusUnavailable
from shared.db import DatabaseUnavailable, Pool, create_pool, load_migrations, migrate, prune
from shared.db import ping as db_ping
from shared.logs import fields, setup_logging
from shared.ops import CHECKS_KEY, export_dead_letters
from shared.settings import DatabaseSettings, ServiceSettings, load_or_exit

log = logging.getLogger("mensajero.service")

BUS_KEY = web.AppKey("bus", Bus)
POOL_KEY = web.AppKey("pool", Pool)

T = TypeVar("T")


class StartupError(Exception):
    """A dependency could not be reached at start-up; the message names it."""


async def _retry_until(
    what: Callable[[], Awaitable[T]], deadline_seconds: float, errors: tuple[type[Exception], ...]
) -> T:
    deadline = time.monotonic() + deadline_seconds
    delay = 0.2
    while True:
        try:
            return await what()
        except errors as error:
            if time.monotonic() + delay >= deadline:
                raise StartupError(str(error)) from error
            log.warning("waiting for a dependency: %s", error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)


def bus_context(
    settings: ServiceSettings, startup_timeout: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        bus = Bus(settings.RABBITMQ_URL, settings.BUS_PREFIX, name=settings.service_name)

        async def connect() -> None:
            await bus.connect(timeout=min(5.0, startup_timeout))

        await _retry_until(connect, startup_timeout, (BusUnavailable,))
        app[BUS_KEY] = bus
        app[CHECKS_KEY]["rabbitmq"] = bus.ping
        # The dead-letter queues of whatever this service consumes (declared at start-up).
        export_dead_letters(
            app, bus, lambda: [bus.names.dead_queue(spec.service) for spec in bus.declared]
        )
        yield
        await bus.close()

    return context


def database_context(
    settings: DatabaseSettings,
    package: str,
    startup_timeout: float,
    *,
    pruning: Sequence[str] = (),
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The pool (migrated), its readiness check, and retention (``pruning``: the service's own
    DELETE statements, see :func:`shared.db.prune`)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        schema = settings.db_schema

        async def connect() -> Pool:
            return await create_pool(
                settings.DATABASE_URL,
                schema,
                max_size=settings.DB_POOL_SIZE,
                timeout=min(5.0, startup_timeout),
            )

        pool = await _retry_until(connect, startup_timeout, (DatabaseUnavailable,))
        applied = await migrate(pool, schema, load_migrations(package))
        if applied:
            log.info("migrations applied", extra=fields(schema=schema, versions=applied))
        app[POOL_KEY] = pool

        async def ready() -> bool:
            return await db_ping(pool)

        app[CHECKS_KEY]["postgresql"] = ready
        retention = asyncio.create_task(_prune_forever(pool, settings, pruning))
        yield
        retention.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retention
        await pool.close()

    return context


async def _prune_forever(pool: Pool, settings: DatabaseSettings, extra: Sequence[str]) -> None:
    """Retention, once at start and then every RETENTION_INTERVAL_SECONDS (replicas may overlap:
    a DELETE of what is already gone deletes nothing)."""
    while True:
        try:
            deleted = await prune(pool, settings.RETENTION_DAYS, extra)
            if deleted:
                log.info(
                    "old records pruned",
                    extra=fields(rows=deleted, retention_days=settings.RETENTION_DAYS),
                )
        except Exception as error:  # retried at the next interval; the service goes on
            log.warning("pruning old records failed: %s", error or type(error).__name__)
        await asyncio.sleep(settings.RETENTION_INTERVAL_SECONDS)


def tune_gc() -> None:
    """Collect less often, and never re-walk what the imports created.

    A service allocates many short-lived objects per message (JSON, events, futures), and a
    webhook batch keeps a thousand events alive until the broker confirms them. With the default
    threshold (700) the collector ran hundreds of times per batch, and its full passes walked
    every imported module's objects: about 40 ms of a 1,000-update webhook in the gateway, and in
    the sender pauses long enough (over its 50 ms pacing burst) to give up send slots.
    """
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def run(
    settings_cls: type[ServiceSettings],
    create_app: Callable[..., web.Application],
    *,
    port_setting: str,
    reuse_port: bool = False,
) -> None:
    """Entry point of a service process: settings (exit 2 when invalid), logs, serve.

    ``reuse_port``: several processes listen on the port (SO_REUSEPORT) and the kernel spreads
    connections between them (the gateway's workers).
    """
    tune_gc()
    settings = load_or_exit(settings_cls)
    setup_logging(settings.service_name, settings.LOG_FORMAT, settings.LOG_LEVEL)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # optional speed-up
        pass
    app = create_app(settings)
    host = settings.HTTP_HOST
    port = int(getattr(settings, port_setting))
    log.info("starting", extra=fields(host=host, port=port, env=settings.MENSAJERO_ENV))
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            shutdown_timeout=settings.SHUTDOWN_GRACE_SECONDS,
            print=None,
            access_log=None,
            reuse_port=reuse_port or None,
        )
    except StartupError as error:
        print(f"{settings.service_name}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    log.info("stopped")
