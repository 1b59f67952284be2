"""What the notifier's use cases work with, built by the bootstrap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from notifier.config import NotifierConfig
from notifier.mailer import Mailer
from notifier.metrics import Metrics
from notifier.pacing import Pacer
from notifier.repository import PgRepository, Repository
from shared.db import Connection
from shared.outbox import Outbox
from shared.resources import Database

Clock = Callable[[], datetime]


@dataclass
class Deps:
    config: NotifierConfig
    database: Database
    outbox: Outbox
    mailer: Mailer
    pacer: Pacer
    metrics: Metrics
    clock: Clock
    repository: Callable[[Connection], Repository] = PgRepository
    # When the "error mails per minute reached" warning was last logged (time.monotonic()).
    last_cap_warning: float = field(default=0.0, repr=False)

    @asynccontextmanager
    async def repo(self) -> AsyncIterator[Repository]:
        """The repository on a connection of its own (statement by statement)."""
        async with self.database.pool.acquire() as conn:
            yield self.repository(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[tuple[Connection, Repository]]:
        """A connection in a transaction, and the repository on it."""
        async with self.database.pool.acquire() as conn, conn.transaction():
            yield conn, self.repository(conn)
