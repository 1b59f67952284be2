"""A bus's channels closed under it (real RabbitMQ): consumption and publishing resume within
``RESUME_SECONDS``, every marker handled, none delivered twice but as a redelivery.

The chaos suite once saw the sender stall for minutes after its connection was closed: aio-pika
logged a robust channel's restore failing ("No active transport"), and a restore that fails is
not tried again until the next reconnect, so that channel's consumer got nothing. The first test
closes the connection again and again with work in flight; the second makes the restore fail
once, deterministically, and expects the bus to open the channel again itself.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections import Counter

import pytest
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import ChannelInvalidStateError

from shared.bus import Bus, Delivery, Handler, QueueSpec
from shared.events import ErrorReported, Event, MessageSent
from tests.helpers import close_broker_connections, wait_for

pytestmark = pytest.mark.integration

# 5 in `make test` (about 25 s); the investigation ran 20 to 30 per run.
CLOSES = int(os.environ.get("BUS_RECONNECT_CLOSES", "5"))
RESUME_SECONDS = 10.0
PER_SECOND = 40  # markers published per second while the closes go on

WORK = QueueSpec(service="work", routing_keys=["error.#"], retry_tiers_ms=(200,))
RESULTS = QueueSpec(service="results", routing_keys=["whatsapp.send.accepted"], retry_tiers_ms=())


async def test_consumption_resumes_after_every_connection_close(
    bus: Bus, rabbitmq_url: str, bus_prefix: str, unique: str
) -> None:
    name = f"closes-{unique}"
    # The bus under test, as a service's: it consumes, and publishes from its handler. ``bus``
    # (never closed) feeds it markers and counts its results; its clean-up deletes both specs.
    service = Bus(f"{rabbitmq_url}?name={name}", bus_prefix)
    await bus.declare_service_queue(WORK)
    handled: Counter[str] = Counter()  # handler runs that ended, per marker
    fresh: Counter[str] = Counter()  # deliveries not flagged redelivered: a second is a copy
    results: Counter[str] = Counter()

    async def work(event: Event, delivery: Delivery) -> None:
        if not delivery.redelivered:
            fresh[event.event_id] += 1
        await asyncio.sleep(random.uniform(0.0, 0.05))  # the work: in flight at a close
        await service.publish(result_of(event))
        handled[event.event_id] += 1

    async def collect(event: Event, delivery: Delivery) -> None:
        assert isinstance(event, MessageSent)
        results[event.command_id] += 1

    published: list[str] = []
    feeder: asyncio.Task[None] | None = None
    try:
        await bus.consume(RESULTS, collect)
        await service.connect()
        await service.consume(WORK, work, concurrency=16)
        feeder = asyncio.create_task(feed(bus, published))
        recoveries: list[float] = []
        for close in range(1, CLOSES + 1):
            # Each close at another moment: after 1 to 40 more markers were handled.
            more = sum(handled.values()) + random.randint(1, 40)
            await wait_for(lambda: sum(handled.values()) >= more, message="markers handled")  # noqa: B023
            assert await close_broker_connections(name) == 2, f"close {close}: not both connections"
            closed_at, index = time.monotonic(), len(published)
            await wait_for(
                functools.partial(handled_after, handled, published, index),
                timeout=RESUME_SECONDS,
                message=f"consumption resumed after close {close} of {CLOSES}",
            )
            recoveries.append(round(time.monotonic() - closed_at, 1))
        print(f"\nrecovery seconds after each close: {recoveries}")
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await wait_for(
            lambda: all(handled[m] and results[m] for m in published),
            timeout=60,
            message="every marker handled and its result published",
        )
        lost = [m for m in published if not handled[m] or not results[m]]
        copies = [m for m in published if fresh[m] > 1]
        redelivered = sum(handled[m] - 1 for m in published)
        duplicate_results = sum(results[m] - 1 for m in published)
        print(
            f"markers {len(published)}: lost {len(lost)}, duplicated {len(copies)}; "
            f"handled again as redeliveries {redelivered}, results published again "
            f"{duplicate_results} (at-least-once)"
        )
        assert (lost, copies) == ([], [])
    finally:
        if feeder is not None:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        await service.close()


async def test_a_channel_whose_restore_failed_is_opened_again(
    bus: Bus, rabbitmq_url: str, bus_prefix: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker closes the consumer's and the declaring channel (the connection stays up) and
    # aio-pika's one try at restoring each fails, as it does when it runs while the connection is
    # away: aio-pika tries again only at the next reconnect, so the bus must open them itself.
    service = Bus(f"{rabbitmq_url}?name=restore-{unique}", bus_prefix)
    await bus.declare_service_queue(WORK)
    handled: list[str] = []
    try:
        await service.connect()
        consumer = await service.consume(WORK, recorder(handled))
        for channel in (consumer._channel, service._channel):
            await kill_channel(monkeypatch, channel)
        await publish_and_wait_handled(
            bus, handled, "consumption resumed on a channel aio-pika did not restore"
        )
        # The declaring channel too (it answers /readyz); publishes, on the bus's publishing
        # connection, are confirmed within their own deadline.
        await wait_for(service.ping, timeout=RESUME_SECONDS, message="the declaring channel back")
        again = ErrorReported(service="test", error_type="Marker", message="published")
        await service.publish(again, timeout=RESUME_SECONDS)
        await wait_for(lambda: again.event_id in handled, message="its own publish consumed")
    finally:
        await service.close()


async def test_a_queue_resumed_while_its_channel_is_dead_is_consumed_on_the_new_one(
    bus: Bus, rabbitmq_url: str, bus_prefix: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Handoff takes a partition over (Consumer.resume) at any moment, a moment when the
    # consumer's channel is closed and aio-pika's restore failed among them: the resume must
    # neither wait for ever on that channel nor be forgotten when the bus opens a new one.
    service = Bus(f"{rabbitmq_url}?name=resume-{unique}", bus_prefix)
    await bus.declare_service_queue(WORK)
    handled: list[str] = []
    try:
        await service.connect()
        consumer = await service.consume(WORK, recorder(handled), queues=[])
        await kill_channel(monkeypatch, consumer._channel)
        await asyncio.wait_for(consumer.resume("work"), RESUME_SECONDS)
        assert consumer.consuming == ["work"]
        await publish_and_wait_handled(
            bus, handled, "the resumed queue consumed on the channel the bus opened again"
        )
    finally:
        await service.close()


def recorder(handled: list[str]) -> Handler:
    """A handler that records the id of each event it handles."""

    async def work(event: Event, delivery: Delivery) -> None:
        handled.append(event.event_id)

    return work


async def kill_channel(monkeypatch: pytest.MonkeyPatch, channel: AbstractChannel | None) -> None:
    """The broker closes ``channel`` (its connection stays up) and aio-pika's one restore of it
    fails: it stays closed until the bus opens it again."""
    assert channel is not None
    failed = fail_next_restore(monkeypatch, channel)
    await close_from_broker(channel)
    await wait_for(lambda: failed, message="aio-pika's restore failed")


async def publish_and_wait_handled(bus: Bus, handled: list[str], consumed: str) -> None:
    """A marker published on ``bus``, handled within ``RESUME_SECONDS`` (``consumed``: what that
    shows, for the timeout's message)."""
    marker = ErrorReported(service="test", error_type="Marker", message="marker")
    await bus.publish(marker)
    await wait_for(lambda: marker.event_id in handled, timeout=RESUME_SECONDS, message=consumed)


def fail_next_restore(monkeypatch: pytest.MonkeyPatch, channel: AbstractChannel) -> list[str]:
    """Make aio-pika's next reopen of ``channel`` fail as in the chaos run; the list gets an
    entry when it did."""
    failed: list[str] = []
    reopen = channel.reopen  # RobustChannel.reopen, which its restore calls

    async def flaky() -> None:
        if not failed:
            failed.append("failed")
            raise ChannelInvalidStateError("No active transport in channel")
        await reopen()

    monkeypatch.setattr(channel, "reopen", flaky)
    return failed


async def close_from_broker(channel: AbstractChannel) -> None:
    """The broker closes ``channel`` alone (406: an ack of a delivery tag it never gave)."""
    underlay = await channel.get_underlay_channel()
    await underlay.basic_ack(delivery_tag=10**9)


def result_of(event: Event) -> MessageSent:
    return MessageSent(
        command_id=event.event_id,
        wamid=f"wamid.{event.event_id}",
        to="1",
        phone_number_id="1",
        kind="text",
    )


def handled_after(handled: Counter[str], published: list[str], index: int) -> bool:
    """True when a marker published at ``index`` or later was handled."""
    return any(handled[m] for m in published[index:])


async def feed(bus: Bus, published: list[str]) -> None:
    """Markers at ``PER_SECOND``, each recorded once the broker confirmed it."""
    while True:
        event = ErrorReported(service="test", error_type="Marker", message="marker")
        await bus.publish(event)
        published.append(event.event_id)
        await asyncio.sleep(1 / PER_SECOND)  # the pace, not a wait for anything
