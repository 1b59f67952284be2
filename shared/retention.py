"""Retention, one mechanism for every service with a database, following ``RETENTION_DAYS``.

What no redelivery can need any more is deleted once it is ``RETENTION_DAYS`` old (at least 8:
past Meta's 7 days of webhook retries), in batches, on every replica every
``RETENTION_INTERVAL_SECONDS`` (replicas may overlap: a DELETE of what is gone deletes nothing):
every schema's handled event ids and published outbox rows (``shared.db.prune``), and what the
service adds: DELETE statements taking ``$1`` (the retention in days) and ``$2`` (the batch
size), each deleting one batch, such as the sender's finished message log or the notifier's
mail log and closed digests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from shared.db import prune
from shared.logs import fields
from shared.resources import Database
from shared.runner import Loop
from shared.settings import DatabaseSettings

log = logging.getLogger("mensajero.service")


def retention_loop(
    database: Database, settings: DatabaseSettings, statements: Sequence[str] = ()
) -> Loop:
    """The background loop that prunes ``database`` (its core tables and ``statements``)."""
    days = settings.RETENTION_DAYS

    async def prune_old_records() -> None:
        deleted = await prune(database.pool, days, statements)
        if deleted:
            log.info("old records pruned", extra=fields(rows=deleted, retention_days=days))

    return Loop("retention", settings.RETENTION_INTERVAL_SECONDS, prune_old_records)
