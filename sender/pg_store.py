"""The sender's store in PostgreSQL: the message log, statuses, limits and signals together."""

from __future__ import annotations

from collections.abc import Callable

from sender.pg_limits import PgLimits
from sender.pg_log import PgMessageLog
from sender.pg_signals import PgSignals
from sender.pg_statuses import PgStatusLog
from shared.batching import HeldConnections
from shared.resources import Database


class PostgresStore(PgMessageLog, PgStatusLog, PgLimits, PgSignals):
    """:class:`sender.store.SenderStore` on the service's database (a resource: it closes the
    connections it keeps, unless they are shared with the outbox, which then closes them)."""

    def __init__(
        self,
        database: Database,
        *,
        held: HeldConnections | None = None,
        outbox_written: Callable[[], None] | None = None,
    ) -> None:
        PgMessageLog.__init__(self, database, held=held, outbox_written=outbox_written)
