"""A consumer killed between receiving a message and acking it: the effect happens once.

The consumer runs in its own process and is SIGKILLed at each point of handling; a fresh one
takes over the redelivered message. Real RabbitMQ, real PostgreSQL, real process death.
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import pytest

from shared.bus import Bus, Delivery, QueueSpec
from shared.events import EmailDelivered, ErrorReported, Event, stable_id
from tests.helpers import wait_for
from tests.shared.crash_consumer import SPEC as CRASH_SPEC

pytestmark = pytest.mark.integration


async def start_consumer(
    rabbitmq_url: str, prefix: str, database_url: str, schema: str, point: str
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.shared.crash_consumer",
        rabbitmq_url, prefix, database_url, schema, point,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    await read_until(process, "CONSUMING")
    return process


async def read_until(process: asyncio.subprocess.Process, prefix: str) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"consumer exited before printing {prefix!r}")
            if line.startswith(prefix):
                return line.strip()


@pytest.mark.parametrize("point", ["in_transaction", "before_publish", "before_ack"])
async def test_killed_consumer_is_replaced_and_the_effect_happens_once(
    point: str, rabbitmq_url: str, database_url: str, db_schema: str, bus: Bus, bus_prefix: str
) -> None:
    copies: list[str] = []

    async def watch(event: Event, delivery: Delivery) -> None:
        copies.append(event.event_id)

    await bus.consume(QueueSpec(service="watch", routing_keys=[EmailDelivered.TYPE]), watch)
    bus.declared.append(CRASH_SPEC)  # declared by the consumer process: deleted with the bus
    first = await start_consumer(rabbitmq_url, bus_prefix, database_url, db_schema, point)
    original = ErrorReported(service="test", error_type="Original", message="hola")
    await bus.publish(original)

    await read_until(first, f"STOPPED {point}")
    first.kill()  # SIGKILL: no cleanup, no ack, the broker gets the message back
    await first.wait()

    second = await start_consumer(rabbitmq_url, bus_prefix, database_url, db_schema, "none")
    try:
        await read_until(second, f"HANDLED {original.event_id}")
        conn = await asyncpg.connect(database_url, server_settings={"search_path": db_schema})
        try:
            effects = await conn.fetchval(
                "SELECT count(*) FROM effects WHERE event_id = $1", original.event_id
            )
        finally:
            await conn.close()
        assert effects == 1
        # The effect's event was published (once: downstream dedupes on its stable id).
        await wait_for(lambda: copies, message="the outbox event")
        assert copies == [stable_id(original.event_id, "copy")]
    finally:
        second.kill()
        await second.wait()
