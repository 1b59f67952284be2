"""``python -m shared.replay``: dead-lettered and unrouted messages back to work (real RabbitMQ)."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from shared.bus import ROUTING_KEY_HEADER, UNROUTED_SERVICE, Bus, Delivery, QueueSpec, Reject
from shared.events import ErrorReported, Event
from shared.replay import replay_dead
from tests.helpers import wait_for
from tests.shared.test_bus import queue_depth

pytestmark = pytest.mark.integration

SPEC = QueueSpec(service="svc", routing_keys=["error.#"], retry_tiers_ms=(50,))


async def _cli(rabbitmq_url: str, bus_prefix: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.replay",
        *args,
        env={**os.environ, "RABBITMQ_URL": rabbitmq_url, "BUS_PREFIX": bus_prefix},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_dead_letters_go_back_to_their_service_only_with_fresh_attempts(
    bus: Bus, rabbitmq_url: str, bus_prefix: str
) -> None:
    broken = True
    handled: list[tuple[str, int]] = []
    other: list[Event] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        if broken:
            raise Reject("a bug, fixed later")
        handled.append((event.event_id, delivery.attempt))

    async def other_handler(event: Event, delivery: Delivery) -> None:
        other.append(event)

    await bus.consume(SPEC, handler)
    # A second service bound to the same events must not see the replay.
    await bus.consume(QueueSpec(service="other", routing_keys=["error.#"]), other_handler)
    events = [ErrorReported(service="t", error_type="T", message=str(n)) for n in range(3)]
    for event in events:
        await bus.publish(event)
    dead = bus.names.dead_queue("svc")
    await wait_for(lambda: _depth(bus, dead, 3), message="3 dead-lettered")
    await wait_for(lambda: len(other) == 3, message="the other service's copies")

    broken = False  # the fix is deployed
    code, out, err = await _cli(rabbitmq_url, bus_prefix, "dead", "svc")
    assert code == 0, err
    assert f"moved 3 message(s) from {dead} to {bus.names.queue('svc')}" in out
    await wait_for(lambda: len(handled) == 3, message="the replayed messages handled")
    assert sorted(handled) == sorted((e.event_id, 1) for e in events)
    assert await queue_depth(bus, dead) == 0
    assert len(other) == 3


async def test_unrouted_events_go_to_the_exchange_with_their_routing_key(
    bus: Bus, rabbitmq_url: str, bus_prefix: str
) -> None:
    parked = bus.names.queue(UNROUTED_SERVICE)
    channel = await bus.connection.channel()
    await channel.declare_queue(parked, durable=True, arguments={"x-queue-type": "quorum"})
    await channel.close()
    event = ErrorReported(service="t", error_type="T", message="parked")
    await bus.publish_raw(
        routing_key=parked,
        body=event.model_dump_json().encode(),
        event_type=event.type,
        event_id=event.event_id,
        headers={ROUTING_KEY_HEADER: event.routing_key},
        exchange="",
    )
    # Nothing bound yet: the replay stops, and the event stays parked.
    code, _out, err = await _cli(rabbitmq_url, bus_prefix, "unrouted")
    assert code == 1 and "stays in the queue" in err
    assert await queue_depth(bus, parked) == 1

    got: list[Event] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        got.append(event)

    await bus.consume(SPEC, handler)
    code, out, err = await _cli(rabbitmq_url, bus_prefix, "unrouted")
    assert code == 0, err
    assert "moved 1 message(s)" in out
    await wait_for(lambda: got, message="the parked event consumed")
    assert got[0] == event
    with_channel = await bus.connection.channel()
    await with_channel.queue_delete(parked)
    await with_channel.close()


async def test_missing_queue_is_a_clear_error(rabbitmq_url: str, bus_prefix: str) -> None:
    code, _out, err = await _cli(rabbitmq_url, bus_prefix, "dead", "nobody")
    assert code == 1
    assert f"{bus_prefix}.nobody.dead" in err


async def test_replay_respects_the_limit(bus: Bus) -> None:
    async def reject(event: Event, delivery: Delivery) -> None:
        raise Reject("no")

    consumer = await bus.consume(SPEC, reject)
    for n in range(5):
        await bus.publish(ErrorReported(service="t", error_type="T", message=str(n)))
    dead = bus.names.dead_queue("svc")
    await wait_for(lambda: _depth(bus, dead, 5), message="5 dead-lettered")
    await consumer.stop()
    assert await replay_dead(bus, "svc", limit=2) == 2
    assert await queue_depth(bus, dead) == 3
    assert await queue_depth(bus, bus.names.queue("svc")) == 2


async def _depth(bus: Bus, name: str, count: int) -> bool:
    return await queue_depth(bus, name) == count
