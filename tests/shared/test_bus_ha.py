"""Retry tiers are quorum queues (they survive a broker node's loss), and the classic tiers of
earlier versions drain and go away by themselves (real RabbitMQ)."""

from __future__ import annotations

import aio_pika
import aiormq
import pytest

from shared.bus import Bus, Delivery, QueueSpec
from shared.events import ErrorReported, Event
from tests.helpers import broker_channel_count, wait_for

pytestmark = pytest.mark.integration

TIERS = (200, 400)


def spec() -> QueueSpec:
    return QueueSpec(service="ha", routing_keys=["error.#"], retry_tiers_ms=TIERS)


async def exists(bus: Bus, name: str) -> bool:
    return await bus.message_count(name) is not None


async def test_retry_tiers_are_quorum_queues_dead_lettered_at_least_once(bus: Bus) -> None:
    await bus.declare_service_queue(spec())
    channel = await bus.connection.channel()
    name = bus.names.wait_queue("ha", TIERS[0])
    assert name.endswith(".retry.200")
    expected = {
        "x-queue-type": "quorum",
        "x-message-ttl": TIERS[0],
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": bus.names.queue("ha"),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    # A declaration is accepted only when it is equivalent to the queue that exists.
    await channel.declare_queue(name, durable=True, arguments=expected)
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
        await channel.declare_queue(
            name, durable=True, arguments={**expected, "x-queue-type": "classic"}
        )


async def test_a_classic_tier_of_an_earlier_version_drains_then_is_deleted(bus: Bus) -> None:
    got: list[str] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        got.append(event.event_id)

    legacy = bus.names.legacy_wait_queue("ha", TIERS[0])
    empty_legacy = bus.names.legacy_wait_queue("ha", TIERS[1])
    channel = await bus.connection.channel()
    # What an earlier version declared: classic tiers dead-lettering into the service queue
    # (declared by the consumer below, before the parked message's TTL runs out).
    for name, ttl in ((legacy, 2_000), (empty_legacy, TIERS[1])):
        await channel.declare_queue(
            name,
            durable=True,
            arguments={
                "x-message-ttl": ttl,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": bus.names.queue("ha"),
            },
        )
    parked = ErrorReported(service="test", error_type="Test", message="parked before")
    await channel.default_exchange.publish(
        aio_pika.Message(
            parked.model_dump_json().encode(), type=parked.type, message_id=parked.event_id
        ),
        routing_key=legacy,
    )

    consumer = await bus.consume(spec(), handler)
    assert not await exists(bus, empty_legacy), "an empty classic tier is deleted at once"
    assert await exists(bus, legacy), "a classic tier holding a message is kept"
    await wait_for(lambda: got == [parked.event_id], message="the parked message handled")
    await consumer.stop(grace=1)
    await bus.declare_service_queue(spec())  # the next start
    assert not await exists(bus, legacy)


async def test_message_count_reads_the_broker_now(bus: Bus) -> None:
    await bus.declare_service_queue(spec())
    dead = bus.names.dead_queue("ha")
    assert await bus.message_count(dead) == 0
    channel = await bus.connection.channel()
    await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=dead)
    await wait_for(lambda: _count_is(bus, dead, 1), message="one dead letter counted")
    assert await bus.message_count(f"{dead}.missing") is None
    assert await bus.message_count(dead) == 1, "a missing queue does not break the next count"


async def test_checks_of_a_missing_queue_leave_no_channel_open(
    bus: Bus, rabbitmq_url: str, bus_prefix: str, unique: str
) -> None:
    # The queue-depth metrics check queues that may not exist yet: each check closes its
    # channel at the broker, and aio-pika restored every one it was not told to forget.
    name = f"inspect-{unique}"
    inspector = Bus(f"{rabbitmq_url}?name={name}", bus_prefix)
    await inspector.connect()
    try:
        await bus.declare_service_queue(spec())
        for _ in range(10):
            assert await inspector.message_count(f"{bus_prefix}.missing") is None
            # One round trip after each: a restore under way has reached the broker.
            assert await inspector.message_count(bus.names.dead_queue("ha")) == 0
        # The publishing channel and the one inspecting.
        assert await broker_channel_count(name) <= 2
    finally:
        await inspector.close()


async def _count_is(bus: Bus, name: str, expected: int) -> bool:
    return await bus.message_count(name) == expected


async def test_the_handoff_feed_is_a_quorum_queue_and_an_old_classic_one_is_kept(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    from handoff.feed import FEED_ARGUMENTS, FeedQueue, feed_queue_name

    name = feed_queue_name(bus)
    channel = await bus.connection.channel()
    try:
        await FeedQueue(bus).start()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
            await channel.declare_queue(name, durable=True, arguments=FEED_ARGUMENTS)
        channel = await bus.connection.channel()
        await channel.queue_delete(name)

        # What an earlier version declared: handoff still starts, with the feed it finds.
        await channel.declare_queue(name, durable=True, arguments=FEED_ARGUMENTS)
        await FeedQueue(bus).start()
        assert "classic queue from an earlier version" in caplog.text
        await bus.publish_raw(
            routing_key="handoff.requested",
            body=b"{}",
            event_type="handoff.requested",
            event_id="1",
        )
        await wait_for(lambda: _count_is(bus, name, 1), message="the feed still bound")
    finally:
        channel = await bus.connection.channel()
        await channel.queue_delete(name)
