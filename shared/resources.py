"""The adapters every service opens at start and closes at stop: the broker and the database.

Both are built at bootstrap without any I/O and connect in ``start()``, waiting up to
``STARTUP_TIMEOUT_SECONDS`` for RabbitMQ or PostgreSQL to come up; past that a
:class:`StartupError` names what could not be reached (the process exits 1). What uses them
holds the adapter, not a connection: ``database.pool`` is there once the database started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from shared.bus import Bus, BusUnavailable
from shared.db import DatabaseUnavailable, Migration, Pool, create_pool, load_migrations, migrate
from shared.db import ping as db_ping
from shared.logs import fields
from shared.settings import DatabaseSettings

log = logging.getLogger("mensajero.service")

T = TypeVar("T")
# One connection attempt may take this long; the attempts go on until the startup timeout.
CONNECT_TIMEOUT_SECONDS = 5.0


class StartupError(Exception):
    """A dependency could not be reached at start-up; the message names it."""


async def retry_until(
    what: Callable[[], Awaitable[T]], deadline_seconds: float, errors: tuple[type[Exception], ...]
) -> T:
    """``what()`` until it works, with growing pauses; StartupError past the deadline."""
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


class BrokerConnection:
    """The bus as a resource: connected at start, closed (its consumers first) at stop."""

    def __init__(self, bus: Bus, startup_timeout: float) -> None:
        self.bus = bus
        self.startup_timeout = startup_timeout

    async def start(self) -> None:
        timeout = min(CONNECT_TIMEOUT_SECONDS, self.startup_timeout)

        async def connect() -> None:
            await self.bus.connect(timeout=timeout)

        await retry_until(connect, self.startup_timeout, (BusUnavailable,))

    async def close(self) -> None:
        await self.bus.close()

    async def ready(self) -> bool:
        return await self.bus.ping()


class Database:
    """The service's PostgreSQL: a pool on its own schema, migrated at start, closed at stop."""

    def __init__(
        self,
        url: str,
        schema: str,
        migrations: Sequence[Migration],
        *,
        pool_size: int = 10,
        startup_timeout: float = 20.0,
    ) -> None:
        self.url = url
        self.schema = schema
        self.migrations = list(migrations)
        self.pool_size = pool_size
        self.startup_timeout = startup_timeout
        self._pool: Pool | None = None

    @classmethod
    def for_service(
        cls, settings: DatabaseSettings, package: str, *, startup_timeout: float | None = None
    ) -> Database:
        """``DATABASE_URL``, ``DB_SCHEMA`` and ``<package>/migrations``."""
        return cls(
            settings.DATABASE_URL,
            settings.db_schema,
            load_migrations(package),
            pool_size=settings.DB_POOL_SIZE,
            startup_timeout=(
                settings.STARTUP_TIMEOUT_SECONDS if startup_timeout is None else startup_timeout
            ),
        )

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise DatabaseUnavailable(f"the database of schema {self.schema} is not started")
        return self._pool

    async def start(self) -> None:
        timeout = min(CONNECT_TIMEOUT_SECONDS, self.startup_timeout)

        async def connect() -> Pool:
            return await create_pool(
                self.url, self.schema, max_size=self.pool_size, timeout=timeout
            )

        pool = await retry_until(connect, self.startup_timeout, (DatabaseUnavailable,))
        applied = await migrate(pool, self.schema, self.migrations)
        if applied:
            log.info("migrations applied", extra=fields(schema=self.schema, versions=applied))
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ready(self) -> bool:
        return self._pool is not None and await db_ping(self._pool)
