"""Exactly-once effects over an at-least-once bus: the inbox and the outbox.

A consumer handles an event in one PostgreSQL transaction that (1) records the event id in the
inbox, (2) changes its state, and (3) writes the events it wants to publish into the outbox.
After the commit it publishes the outbox rows and marks them published; only then is the message
acked. A redelivered event finds its id in the inbox, skips the state change, and publishes
whatever its first run left unpublished (a crash between commit and publish). Published event
ids are deterministic, so a publish repeated after a crash is deduplicated downstream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from asyncpg import Record

from shared.bus import Bus
from shared.db import Connection, Pool
from shared.events import Event

Work = Callable[[Connection], Awaitable[Sequence[Event]]]


async def handle_once(pool: Pool, bus: Bus, event_id: str, work: Work) -> bool:
    """Run ``work`` once per ``event_id`` and publish what it returns. True if it ran now."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            first_time = await conn.fetchval(
                "INSERT INTO inbox (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
                event_id,
            )
            if first_time:
                outgoing = await work(conn)
                await add_to_outbox(conn, event_id, outgoing)
        await publish_pending(conn, bus, source_id=event_id)
    return bool(first_time)


async def add_to_outbox(conn: Connection, source_id: str, events: Sequence[Event]) -> None:
    if not events:
        return
    await conn.executemany(
        "INSERT INTO outbox (source_id, event_id, event_type, body, correlation_id)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        [
            (source_id, e.event_id, e.type, e.model_dump_json().encode(), e.correlation_id)
            for e in events
        ],
    )


async def publish_pending(
    conn: Connection, bus: Bus, *, source_id: str | None = None, limit: int = 500
) -> int:
    """Publish unpublished outbox rows (of one source, or all), oldest first."""
    if source_id is None:
        rows = await conn.fetch(
            "SELECT id, event_id, event_type, body, correlation_id FROM outbox"
            " WHERE published_at IS NULL ORDER BY id LIMIT $1",
            limit,
        )
    else:
        rows = await conn.fetch(
            "SELECT id, event_id, event_type, body, correlation_id FROM outbox"
            " WHERE source_id = $1 AND published_at IS NULL ORDER BY id",
            source_id,
        )
    await _publish_rows(conn, bus, rows)
    return len(rows)


async def publish_stale(pool: Pool, bus: Bus, older_than: float, *, limit: int = 200) -> int:
    """Publish outbox rows a crash left behind (unpublished for ``older_than`` seconds).

    Rows are locked while they are published, so replicas relaying at once share the work.
    """
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, event_id, event_type, body, correlation_id FROM outbox"
            " WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $1)"
            " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            older_than,
            limit,
        )
        await _publish_rows(conn, bus, rows)
    return len(rows)


async def _publish_rows(conn: Connection, bus: Bus, rows: Sequence[Record]) -> None:
    for row in rows:
        await bus.publish_raw(
            routing_key=row["event_type"],
            body=bytes(row["body"]),
            event_type=row["event_type"],
            event_id=row["event_id"],
            correlation_id=row["correlation_id"],
        )
        await conn.execute("UPDATE outbox SET published_at = now() WHERE id = $1", row["id"])
