"""Migrations and the inbox/outbox against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from shared import db
from shared.bus import Bus, Delivery, QueueSpec
from shared.db import Connection, Migration, create_pool, migrate
from shared.events import ErrorReported, Event, stable_id
from shared.outbox import Outbox
from shared.resources import Database
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

MIGRATIONS = [
    Migration(1, "0001_things.sql", "CREATE TABLE things (id text PRIMARY KEY, n int NOT NULL)"),
    Migration(2, "0002_more.sql", "ALTER TABLE things ADD COLUMN note text"),
]


async def test_migrations_apply_once_even_from_concurrent_replicas(
    database_url: str, db_schema: str
) -> None:
    pools = [await create_pool(database_url, db_schema) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(p, db_schema, MIGRATIONS) for p in pools))
        assert sorted(results, key=len) == [[], [], [1, 2]]
        columns = await pools[0].fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = 'things'",
            db_schema,
        )
        assert {r["column_name"] for r in columns} == {"id", "n", "note"}
    finally:
        for pool in pools:
            await pool.close()


async def test_handle_once_runs_work_once_and_publishes_its_events(
    database_url: str, db_schema: str, bus: Bus
) -> None:
    received: list[Event] = []

    async def collect(event: Event, delivery: Delivery) -> None:
        received.append(event)

    await bus.consume(QueueSpec(service="watch", routing_keys=["error.#"]), collect)
    database = Database(database_url, db_schema, MIGRATIONS)
    await database.start()
    outbox = Outbox(database, bus)
    await outbox.start()
    pool = database.pool
    try:
        runs = 0

        async def work(conn: Connection) -> list[Event]:
            nonlocal runs
            runs += 1
            await conn.execute("INSERT INTO things (id, n) VALUES ('a', 1)")
            return [
                ErrorReported(
                    event_id=stable_id("source-1", "report"),
                    service="t",
                    error_type="X",
                    message="once",
                )
            ]

        assert await outbox.handle_once("source-1", work) is True
        assert await outbox.handle_once("source-1", work) is False
        assert runs == 1
        await wait_for(lambda: received, message="outbox event")
        assert [e.event_id for e in received] == [stable_id("source-1", "report")]
        pending = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        assert pending == 0
    finally:
        await outbox.close()
        await database.close()


async def test_a_failed_work_leaves_no_trace(database_url: str, db_schema: str, bus: Bus) -> None:
    database = Database(database_url, db_schema, MIGRATIONS)
    await database.start()
    outbox = Outbox(database, bus)
    pool = database.pool
    try:

        async def work(conn: Connection) -> list[Event]:
            await conn.execute("INSERT INTO things (id, n) VALUES ('b', 1)")
            raise RuntimeError("handler bug")

        with pytest.raises(RuntimeError):
            await outbox.handle_once("source-2", work)
        assert await pool.fetchval("SELECT count(*) FROM things") == 0
        assert await pool.fetchval("SELECT count(*) FROM inbox") == 0
    finally:
        await database.close()


async def test_unreachable_database_is_named(unique: str) -> None:
    from shared.db import DatabaseUnavailable

    with pytest.raises(DatabaseUnavailable, match="cannot reach PostgreSQL at postgresql://"):
        await create_pool("postgresql://postgres@127.0.0.1:1/postgres", f"t_{unique}", timeout=2)


async def test_unreachable_broker_is_named() -> None:
    from shared.bus import BusUnavailable

    bus = Bus("amqp://guest:secret@127.0.0.1:1/", "x")
    with pytest.raises(BusUnavailable, match=r"cannot reach RabbitMQ at amqp://guest:\*\*\*@"):
        await bus.connect(timeout=3)


async def test_prune_deletes_only_what_no_redelivery_needs(
    database_url: str, db_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PRUNE_BATCH", 3)  # several batches per statement
    pool = await create_pool(database_url, db_schema)
    try:
        await migrate(pool, db_schema, MIGRATIONS)
        await pool.execute(
            "INSERT INTO inbox (event_id, handled_at)"
            " SELECT 'old-' || n, now() - interval '31 days' FROM generate_series(1, 7) n"
            " UNION ALL SELECT 'new-' || n, now() - interval '29 days' FROM generate_series(1, 2) n"
        )
        await pool.execute(
            "INSERT INTO outbox (source_id, event_id, event_type, body, created_at, published_at)"
            " VALUES ('s', 'published-old', 't', '', now() - interval '40 days',"
            "         now() - interval '40 days'),"
            "        ('s', 'published-new', 't', '', now() - interval '2 days', now()),"
            "        ('s', 'never-published', 't', '', now() - interval '40 days', NULL)"
        )
        await pool.execute(
            "INSERT INTO things (id, n) SELECT 't' || n, n FROM generate_series(1, 5) n"
        )
        extra = [
            "DELETE FROM things WHERE ctid = ANY(ARRAY(SELECT ctid FROM things"
            " WHERE n <= $1 - 27 LIMIT $2))"
        ]  # n <= 3 for 30 days
        assert await db.prune(pool, 30, extra) == 7 + 1 + 3
        inbox = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox")}
        assert inbox == {"new-1", "new-2"}
        outbox = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM outbox")}
        assert outbox == {"published-new", "never-published"}
        assert await pool.fetchval("SELECT count(*) FROM things") == 2
        assert await db.prune(pool, 30, extra) == 0
    finally:
        await pool.close()


def test_retention_below_metas_retry_horizon_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import DatabaseSettings, SettingsError, load_settings

    monkeypatch.setenv("RETENTION_DAYS", "7")
    with pytest.raises(SettingsError, match="RETENTION_DAYS is invalid"):
        load_settings(DatabaseSettings)
