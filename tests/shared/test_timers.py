"""Durable timers on a real database and broker: fired once across pollers, with their effect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from shared import timers
from shared.bus import Bus, QueueSpec
from shared.db import Connection, Migration
from shared.events import ErrorReported, Event, stable_id
from shared.outbox import Outbox
from shared.resources import Database

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
MIGRATIONS = [Migration(1, "0001_effects.sql", "CREATE TABLE effects (subject text, kind text)")]


@pytest.fixture
async def outboxes(
    database_url: str, db_schema: str, bus: Bus
) -> AsyncIterator[tuple[Outbox, Outbox]]:
    """Two replicas: two databases (pools) on one schema, each with its outbox."""
    # Something bound for the effects' events, so that their publishes are routable.
    await bus.declare_service_queue(QueueSpec("sink", ["#"], retry_tiers_ms=(100,)))
    databases = [Database(database_url, db_schema, MIGRATIONS) for _ in range(2)]
    for database in databases:
        await database.start()
    first, second = (Outbox(database, bus) for database in databases)
    yield first, second
    for database in databases:
        await database.close()


async def effect(conn: Connection, timer: timers.Timer) -> Sequence[Event]:
    await conn.execute("INSERT INTO effects VALUES ($1, $2)", timer.subject, timer.kind)
    return [
        ErrorReported(
            event_id=stable_id(timer.source_id, "effect"),
            service="t",
            error_type="timer",
            message=timer.subject,
        )
    ]


async def test_due_timers_fire_once_across_concurrent_pollers(
    outboxes: tuple[Outbox, Outbox],
) -> None:
    first, second = outboxes
    pool = first.database.pool
    async with pool.acquire() as conn:
        for n in range(10):
            await timers.schedule(conn, f"S{n}", "queue", NOW - timedelta(seconds=1))
        await timers.schedule(conn, "later", "queue", NOW + timedelta(minutes=1))
    fired = await asyncio.gather(
        *(timers.fire_due(outbox, NOW, effect) for outbox in (first, second, first, second))
    )
    assert sorted(t.subject for batch in fired for t in batch) == [f"S{n}" for n in range(10)]
    assert await pool.fetchval("SELECT count(*) FROM effects") == 10
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    assert await timers.fire_due(first, NOW, effect) == []
    assert [t.subject for t in await timers.due(pool, NOW + timedelta(minutes=2))] == ["later"]


async def test_a_moved_or_cancelled_timer_does_not_fire_at_its_old_time(
    outboxes: tuple[Outbox, Outbox],
) -> None:
    first, _second = outboxes
    pool = first.database.pool
    async with pool.acquire() as conn:
        await timers.schedule(conn, "moved", "idle", NOW - timedelta(seconds=1))
        await timers.schedule(conn, "gone", "idle", NOW - timedelta(seconds=1))
    stale = {t.subject: t for t in await timers.due(pool, NOW)}
    async with pool.acquire() as conn:
        await timers.schedule(conn, "moved", "idle", NOW + timedelta(hours=1))
        await timers.cancel(conn, "gone")
    for timer in stale.values():
        assert await timers.fire_once(first, timer, NOW, effect) is False
    assert await pool.fetchval("SELECT count(*) FROM effects") == 0
    [pending] = await timers.due(pool, NOW + timedelta(hours=2))
    assert pending.subject == "moved"


async def test_an_effect_that_reschedules_its_timer_leaves_it_pending(
    outboxes: tuple[Outbox, Outbox],
) -> None:
    first, _second = outboxes
    pool = first.database.pool
    async with pool.acquire() as conn:
        await timers.schedule(conn, "again", "idle", NOW - timedelta(seconds=1))

    async def reschedule(conn: Connection, timer: timers.Timer) -> Sequence[Event]:
        await timers.schedule(conn, timer.subject, timer.kind, NOW + timedelta(minutes=5))
        return []

    [fired] = await timers.fire_due(first, NOW, reschedule)
    [pending] = await timers.due(pool, NOW + timedelta(minutes=6))
    assert (pending.id, pending.due_at) == (fired.id, NOW + timedelta(minutes=5))
