"""What every service process shares: its entry point (:func:`run`), and the cleanup contexts
of the services not yet built on :mod:`shared.runner` (the bus, the database).

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
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from shared.bus import Bus, BusUnavailable
from shared.db import Pool
from shared.logs import fields, setup_logging
from shared.ops import CHECKS_KEY, export_dead_letters
from shared.resources import Database, StartupError, retry_until
from shared.retention import retention_loop
from shared.runner import RunningLoop
from shared.settings import DatabaseSettings, ServiceSettings, load_or_exit

log = logging.getLogger("mensajero.service")

# An application's own site (how its connections are served), in place of aiohttp's TCPSite:
# the runner, host, port and whether the port is shared (SO_REUSEPORT).
SiteFactory = Callable[[web.BaseRunner, str, int, bool], web.BaseSite]
SITE_KEY: web.AppKey[SiteFactory] = web.AppKey("site")
BUS_KEY = web.AppKey("bus", Bus)
POOL_KEY = web.AppKey("pool", Pool)
DATABASE_KEY = web.AppKey("database", Database)


def bus_context(
    settings: ServiceSettings, startup_timeout: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        bus = Bus(settings.RABBITMQ_URL, settings.BUS_PREFIX, name=settings.service_name)

        async def connect() -> None:
            await bus.connect(timeout=min(5.0, startup_timeout))

        await retry_until(connect, startup_timeout, (BusUnavailable,))
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
    """The database (migrated), its readiness check, and retention (``pruning``: the service's
    own DELETE statements, see :mod:`shared.retention`), for the services not yet built on
    ``shared.runner``."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        database = Database.for_service(settings, package, startup_timeout=startup_timeout)
        await database.start()
        app[DATABASE_KEY] = database
        app[POOL_KEY] = database.pool
        app[CHECKS_KEY]["postgresql"] = database.ready
        retention = RunningLoop(retention_loop(database, settings, pruning))
        yield
        await retention.stop(grace=0)
        await database.close()

    return context


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
        site = app.get(SITE_KEY)
        if site is None:
            web.run_app(
                app,
                host=host,
                port=port,
                shutdown_timeout=settings.SHUTDOWN_GRACE_SECONDS,
                print=None,
                access_log=None,
                reuse_port=reuse_port or None,
            )
        else:
            serve(app, site, host, port, settings.SHUTDOWN_GRACE_SECONDS, reuse_port)
    except StartupError as error:
        print(f"{settings.service_name}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    log.info("stopped")


def serve(
    app: web.Application,
    site: SiteFactory,
    host: str,
    port: int,
    shutdown_timeout: float,
    reuse_port: bool,
) -> None:
    """``web.run_app`` for an application with a site of its own (:data:`SITE_KEY`): the same
    runner, the same graceful stop on SIGTERM/SIGINT (the runner's signal handlers end the main
    task alone; what it started finishes within ``shutdown_timeout`` before the rest is
    cancelled), the same loop teardown."""

    async def main() -> None:
        runner = web.AppRunner(
            app, handle_signals=True, access_log=None, shutdown_timeout=shutdown_timeout
        )
        await runner.setup()
        try:
            await site(runner, host, port, reuse_port).start()
            await asyncio.Event().wait()  # until a signal
        finally:
            await runner.cleanup()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(main())
    try:
        loop.run_until_complete(task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(task)
        finally:
            rest = asyncio.all_tasks(loop)
            for other in rest:
                other.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
