"""Timers kept in PostgreSQL, and the outbox relay: background loops on every replica.

A due timer is taken with ``FOR UPDATE SKIP LOCKED`` inside the transaction that applies its
effect, marks it fired and writes its events to the outbox, so it fires once across replicas and
survives restarts (a timer that came due while no replica ran fires at the next poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from handoff.handlers import RETRYABLE
from handoff.metrics import HandoffMetrics
from handoff.repository import PgRepository, Timer
from handoff.service import Handoff, Outcome
from shared.bus import Bus
from shared.db import Pool
from shared.events import stable_id
from shared.logs import fields
from shared.outbox import add_to_outbox, publish_pending, publish_stale

log = logging.getLogger("mensajero.handoff.timers")


async def fire_due(pool: Pool, bus: Bus, core: Handoff, metrics: HandoffMetrics | None) -> int:
    """Fire every timer due now; returns how many fired here."""
    fired = 0
    while True:
        now = core.clock()
        outcome: Outcome | None = None
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    row = await conn.fetchrow(
                        "SELECT id, case_code, kind, due_at FROM timers"
                        " WHERE fired_at IS NULL AND due_at <= $1"
                        " ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                        now,
                    )
                    if row is None:
                        return fired
                    timer = Timer(row["id"], row["case_code"], row["kind"], row["due_at"])
                    source_id = stable_id("timer", str(timer.id), timer.due_at.isoformat())
                    await conn.execute(
                        "UPDATE timers SET fired_at = $2 WHERE id = $1", timer.id, now
                    )
                    first = await conn.fetchval(
                        "INSERT INTO inbox (event_id) VALUES ($1)"
                        " ON CONFLICT DO NOTHING RETURNING true",
                        source_id,
                    )
                    if first:
                        outcome = await core.on_timer(PgRepository(conn), timer, source_id)
                        await add_to_outbox(conn, source_id, outcome.events)
            except RETRYABLE:
                log.info("timer met a concurrent update; it fires at the next poll")
                return fired
            fired += 1
            if metrics is not None:
                metrics.timers_fired.labels(timer.kind).inc()
                if outcome is not None:
                    metrics.apply(outcome.facts)
            log.info("timer fired", extra=fields(case=timer.case_code, kind=timer.kind))
            await publish_pending(conn, bus, source_id=source_id)


async def refresh_gauges(pool: Pool, metrics: HandoffMetrics) -> None:
    async with pool.acquire() as conn:
        metrics.set_counts(await PgRepository(conn).counts())


@contextlib.asynccontextmanager
async def background(
    pool: Pool,
    bus: Bus,
    core: Handoff,
    metrics: HandoffMetrics,
    *,
    interval: float,
    outbox_after: float,
) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            try:
                await fire_due(pool, bus, core, metrics)
                await publish_stale(pool, bus, outbox_after)
                await refresh_gauges(pool, metrics)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep polling: the next round retries
                log.exception("timer loop failed; retrying at the next poll")
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name="handoff-timers")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
