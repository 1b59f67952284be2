"""The bus's confirmed publishing alone: what one publish costs the publishing process.

``BENCH_PUBLISHES`` (20,000) persistent, mandatory publishes of a webhook-sized event through
``Bus.publish_raw``, 32 in flight (as many as the receivers bench's connections), into a quorum
queue bound to every event, twice (the first warms up). Prints publishes per second and this
process's CPU per publish (user and system, from ``getrusage``); the broker's is not counted.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
import uuid

from bench.gateway_bench import RABBITMQ_URL
from shared.bus import Bus, QueueSpec

PUBLISHES = int(os.environ.get("BENCH_PUBLISHES", "20000"))
IN_FLIGHT = 32
BODY = b'{"type":"whatsapp.message.received","text":"' + b"Hola" * 200 + b'"}'
SINK = QueueSpec(service="sink", routing_keys=["#"], retry_tiers_ms=())


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _publish_all(bus: Bus, tag: str) -> tuple[float, float, float]:
    numbers = iter(range(PUBLISHES))

    async def publisher() -> None:
        for n in numbers:
            await bus.publish_raw(
                routing_key="whatsapp.message.received",
                body=BODY,
                event_type="whatsapp.message.received",
                event_id=f"{tag}-{n}",
                key="+5491135722871",
            )

    user, system = _cpu()
    began = time.perf_counter()
    await asyncio.gather(*(publisher() for _ in range(IN_FLIGHT)))
    seconds = time.perf_counter() - began
    user_after, system_after = _cpu()
    return seconds, user_after - user, system_after - system


async def run() -> dict[str, float]:
    bus = Bus(RABBITMQ_URL, f"bench.{uuid.uuid4().hex[:8]}")
    await bus.connect()
    try:
        await bus.declare_service_queue(SINK)
        await _publish_all(bus, "warm-up")
        seconds, user, system = await _publish_all(bus, "measured")
    finally:
        await bus.delete_topology([SINK])
        await bus.close()
    return {
        "publishes_per_second": PUBLISHES / seconds,
        "publish_user_cpu_us": 1e6 * user / PUBLISHES,
        "publish_system_cpu_us": 1e6 * system / PUBLISHES,
    }
