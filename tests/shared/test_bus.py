"""The bus against a real RabbitMQ: confirms, returns, retries, dead-letters, order."""

from __future__ import annotations

import asyncio
import random

import aio_pika
import pytest

from shared.bus import ATTEMPT_HEADER, Bus, BusError, Delivery, QueueSpec, Reject
from shared.events import ErrorReported, Event
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def error_event(message: str = "boom") -> ErrorReported:
    return ErrorReported(service="test", error_type="Test", message=message)


def spec(tiers: tuple[int, ...] = (50, 100)) -> QueueSpec:
    return QueueSpec(service="svc", routing_keys=["error.#"], retry_tiers_ms=tiers)


async def queue_depth(bus: Bus, name: str) -> int:
    channel = await bus.connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await channel.close()


async def test_published_event_is_consumed_and_acked(bus: Bus) -> None:
    got: list[Event] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        got.append(event)

    await bus.consume(spec(), handler)
    sent = error_event()
    await bus.publish(sent)
    await wait_for(lambda: got, message="the event")
    assert got[0] == sent
    assert isinstance(got[0], ErrorReported)
    await wait_for(lambda: _empty(bus), message="queue drained")


async def _empty(bus: Bus) -> bool:
    return await queue_depth(bus, bus.names.queue("svc")) == 0


async def test_unroutable_publish_is_an_error(bus: Bus) -> None:
    # No queue is bound to the exchange yet: mandatory publish comes back returned.
    await bus.declare_service_queue(QueueSpec(service="other", routing_keys=["nothing.here"]))
    with pytest.raises(BusError, match="unroutable"):
        await bus.publish(error_event())


async def test_failing_handler_is_retried_through_wait_tiers(bus: Bus) -> None:
    attempts: list[int] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt < 3:
            raise RuntimeError("not yet")

    await bus.consume(spec(), handler)
    await bus.publish(error_event())
    await wait_for(lambda: attempts == [1, 2, 3], message="three attempts")
    await wait_for(lambda: _empty(bus), message="queue drained")
    assert await queue_depth(bus, bus.names.dead_queue("svc")) == 0


async def test_message_that_keeps_failing_ends_in_dead_queue(bus: Bus) -> None:
    attempts: list[int] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise RuntimeError("always")

    await bus.consume(spec(), handler)
    await bus.publish(error_event())
    dead = bus.names.dead_queue("svc")
    await wait_for(lambda: _depth_is(bus, dead, 1), message="dead-lettered")
    assert attempts == [1, 2, 3]  # two retry tiers, then dead


async def _depth_is(bus: Bus, name: str, n: int) -> bool:
    return await queue_depth(bus, name) == n


async def test_reject_dead_letters_at_once(bus: Bus) -> None:
    calls = 0

    async def handler(event: Event, delivery: Delivery) -> None:
        nonlocal calls
        calls += 1
        raise Reject("bad command")

    await bus.consume(spec(), handler)
    await bus.publish(error_event())
    await wait_for(lambda: _depth_is(bus, bus.names.dead_queue("svc"), 1), message="dead")
    assert calls == 1


async def test_unreadable_message_is_dead_lettered_not_crashing(bus: Bus) -> None:
    seen: list[Event] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        seen.append(event)

    await bus.consume(spec(), handler)
    channel = await bus.connection.channel()
    exchange = await channel.get_exchange(bus.names.exchange)
    await exchange.publish(
        aio_pika.Message(b"{not json", type="error.reported"), routing_key="error.reported"
    )
    await channel.close()
    await bus.publish(error_event("after"))
    await wait_for(lambda: seen, message="the good event after the bad one")
    await wait_for(lambda: _depth_is(bus, bus.names.dead_queue("svc"), 1), message="dead")


async def test_per_key_order_is_kept_under_concurrency(bus: Bus) -> None:
    rng = random.Random(7)
    seen: dict[str, list[int]] = {}

    async def handler(event: Event, delivery: Delivery) -> None:
        assert isinstance(event, ErrorReported)
        await asyncio.sleep(rng.random() / 200)  # handlers of different keys interleave
        seen.setdefault(event.error_type, []).append(int(event.message))

    def key(event: Event) -> str:
        assert isinstance(event, ErrorReported)
        return event.error_type

    await bus.consume(spec(), handler, concurrency=32, key=key)
    for i in range(60):
        await bus.publish(ErrorReported(service="t", error_type=f"k{i % 3}", message=str(i)))
    await wait_for(lambda: sum(len(v) for v in seen.values()) == 60, message="all 60")
    for values in seen.values():
        assert values == sorted(values)


async def test_stop_lets_in_flight_work_finish(bus: Bus) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        started.set()
        await release.wait()
        finished.append(event.event_id)

    consumer = await bus.consume(spec(), handler)
    event = error_event()
    await bus.publish(event)
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(consumer.stop(grace=10))
    release.set()
    await stopping
    assert finished == [event.event_id]
    assert await queue_depth(bus, bus.names.queue("svc")) == 0


async def test_attempt_header_survives_the_wait_queue(bus: Bus) -> None:
    headers: list[object] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        headers.append(delivery.attempt)
        if delivery.attempt == 1:
            raise RuntimeError("once")

    await bus.consume(spec(), handler)
    await bus.publish(error_event())
    await wait_for(lambda: len(headers) == 2, message="two deliveries")
    assert headers == [1, 2]
    assert ATTEMPT_HEADER.startswith("x-")


async def test_concurrent_publishes_of_one_event_each_get_their_own_answer(bus: Bus) -> None:
    # The broker's return of an unroutable publish names it by message id (the event id), which
    # several publishes in flight at once share (Meta repeating a webhook): each must still get
    # its own answer: here every one is returned, none silently confirmed.
    await bus.declare_service_queue(QueueSpec(service="other", routing_keys=["nothing.here"]))
    event = error_event()
    results = await asyncio.gather(*(bus.publish(event) for _ in range(20)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["BusError"] * 20
    assert all("unroutable" in str(r) for r in results)
    # A routable publish of the same event right after is confirmed.
    await bus.declare_service_queue(QueueSpec(service="svc", routing_keys=["error.#"]))
    await asyncio.gather(*(bus.publish(event) for _ in range(5)))
    await wait_for(lambda: _depth_is(bus, bus.names.queue("svc"), 5), message="5 copies routed")
