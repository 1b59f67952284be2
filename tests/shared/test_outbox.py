"""The outbox's relay on a real database and broker: rows a crash left unpublished, once; a
publish the broker refused, on the redelivery."""

from __future__ import annotations

import pytest

from shared.bus import Bus, BusError, Delivery, QueueSpec
from shared.db import Connection
from shared.events import ErrorReported, Event, HandoffRequested, Identity
from shared.outbox import Outbox, add_to_outbox
from shared.resources import Database
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


async def test_relay_publishes_rows_left_behind(
    bus: Bus, database_url: str, db_schema: str
) -> None:
    got: list[Event] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        got.append(event)

    await bus.consume(QueueSpec("listener", ["handoff.#"], retry_tiers_ms=(100,)), handler)
    database = Database(database_url, db_schema, [])
    await database.start()
    outbox = Outbox(database, bus)
    pool = database.pool
    try:
        event = HandoffRequested(
            case_code="100",
            phone_number_id="1",
            customer=Identity(phone="+5491155550001"),
            trigger="phrase",
        )
        async with pool.acquire() as conn:
            await add_to_outbox(conn, "crashed-source", [event])
            # Fresh rows are left to the handler that wrote them.
            assert await outbox.publish_stale(older_than=60) == 0
            await conn.execute("UPDATE outbox SET created_at = now() - interval '1 minute'")
        assert await outbox.publish_stale(older_than=5) == 1
        assert await outbox.publish_stale(older_than=5) == 0
    finally:
        await database.close()
    await wait_for(lambda: got, message="the relayed event")
    assert [e.event_id for e in got] == [event.event_id]


async def test_a_publish_the_broker_refuses_is_retried_by_the_redelivery(
    database_url: str, db_schema: str, bus: Bus
) -> None:
    """handle_once raises when its events cannot be published; the event's next delivery (a
    duplicate for the inbox) publishes what the first one left."""
    database = Database(database_url, db_schema, [])
    await database.start()
    outbox = Outbox(database, bus)
    event = ErrorReported(service="t", error_type="x", message="nobody listens yet")

    async def work(conn: Connection) -> list[Event]:
        return [event]

    try:
        with pytest.raises(BusError, match="unroutable"):
            await outbox.handle_once("source-1", work)
        pending = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        assert await database.pool.fetchval(pending) == 1
        await bus.declare_service_queue(QueueSpec("late", ["error.#"], retry_tiers_ms=(100,)))
        assert await outbox.handle_once("source-1", work) is False
        assert await database.pool.fetchval(pending) == 0
    finally:
        await database.close()
