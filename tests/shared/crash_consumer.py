"""A consumer process for the crash test: it stops dead at a chosen point of handling.

    python -m tests.shared.crash_consumer <rabbitmq_url> <prefix> <database_url> <schema> <point>

The handler records an effect (a row) and publishes an event through the outbox, exactly as a
service does. At ``point`` it prints ``STOPPED <point>`` and hangs, so the test can SIGKILL it
there: ``in_transaction`` (effect written, not committed), ``before_publish`` (committed, outbox
not yet published), ``before_ack`` (all done but the ack). With ``none`` it runs normally.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from shared.bus import Bus, Delivery, QueueSpec
from shared.db import Connection, Migration
from shared.events import EmailDelivered, ErrorReported, Event, stable_id
from shared.outbox import Outbox
from shared.resources import Database

SPEC = QueueSpec(service="crash", routing_keys=["error.reported"], retry_tiers_ms=(100,))
MIGRATIONS = [
    Migration(1, "0001_effects.sql", "CREATE TABLE effects (event_id text, n serial PRIMARY KEY)")
]


async def stop_here(point: str) -> None:
    print(f"STOPPED {point}", flush=True)
    await asyncio.Event().wait()  # until SIGKILL


async def main(rabbitmq_url: str, prefix: str, database_url: str, schema: str, point: str) -> None:
    bus = Bus(rabbitmq_url, prefix)
    await bus.connect()
    database = Database(database_url, schema, MIGRATIONS)
    await database.start()
    outbox = Outbox(database, bus)
    await outbox.start()

    if point == "before_publish":
        original = bus.publish_raw

        async def publish_then_stop(**kwargs: Any) -> None:
            if kwargs.get("event_type") == EmailDelivered.TYPE:
                await stop_here(point)
            await original(**kwargs)

        bus.publish_raw = publish_then_stop  # type: ignore[method-assign]

    async def handler(event: Event, delivery: Delivery) -> None:
        async def work(conn: Connection) -> Sequence[Event]:
            await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.event_id)
            if point == "in_transaction":
                await stop_here(point)
            assert isinstance(event, ErrorReported)
            # The effect's event: any type the crash consumer does not itself consume.
            return [
                EmailDelivered(
                    event_id=stable_id(event.event_id, "copy"), addresses=[event.message]
                )
            ]

        await outbox.handle_once(event.event_id, work)
        if point == "before_ack":
            await stop_here(point)
        print(f"HANDLED {event.event_id}", flush=True)

    await bus.consume(SPEC, handler, concurrency=1)
    print("CONSUMING", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
