"""Outbox rows a crash left unpublished are published by the relay loop, once."""

from __future__ import annotations

import pytest

from shared.bus import Bus, Delivery, QueueSpec
from shared.db import create_pool, load_migrations, migrate
from shared.events import Event, HandoffRequested, Identity
from shared.outbox import add_to_outbox, publish_stale
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


async def test_relay_publishes_rows_left_behind(
    bus: Bus, database_url: str, db_schema: str
) -> None:
    got: list[Event] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        got.append(event)

    await bus.consume(QueueSpec("listener", ["handoff.#"], retry_tiers_ms=(100,)), handler)
    pool = await create_pool(database_url, db_schema)
    try:
        await migrate(pool, db_schema, load_migrations("handoff"))
        event = HandoffRequested(
            case_code="100",
            phone_number_id="1",
            customer=Identity(phone="+5491155550001"),
            trigger="phrase",
        )
        async with pool.acquire() as conn:
            await add_to_outbox(conn, "crashed-source", [event])
            # Fresh rows are left to the handler that wrote them.
            assert await publish_stale(pool, bus, older_than=60) == 0
            await conn.execute("UPDATE outbox SET created_at = now() - interval '1 minute'")
        assert await publish_stale(pool, bus, older_than=5) == 1
        assert await publish_stale(pool, bus, older_than=5) == 0
    finally:
        await pool.close()
    await wait_for(lambda: got, message="the relayed event")
    assert [e.event_id for e in got] == [event.event_id]
