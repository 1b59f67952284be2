"""Partitioned queues against a real RabbitMQ and PostgreSQL: one key, one partition; retries
and dead letters per partition; a changed count; the replicas' share of the partitions."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from shared.bus import (
    KEY_HEADER,
    Bus,
    Delivery,
    PartitionMismatch,
    QueueSpec,
    RawPublish,
    partition,
)
from shared.events import Event, InboundMessage
from shared.partitions import Holders, PartitionLeases, to_release, to_take
from tests.handoff.support import inbound
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

KEYS = [InboundMessage.TYPE]


def spec(partitions: int = 4, *, single: bool = False) -> QueueSpec:
    """(Single active consumer queues refuse ``basic.get``, which these tests read with.)"""
    return QueueSpec(
        service="work",
        routing_keys=KEYS,
        retry_tiers_ms=(50,),
        single_active_consumer=single,
        partitions=partitions,
    )


def customer(n: int) -> str:
    return f"+54911555{n:05d}"


async def depth(bus: Bus, name: str) -> int:
    count = await bus.message_count(bus.names.queue(name))
    assert count is not None, f"{name} does not exist"
    return count


# ------------------------------------------------------------------ the share, pure


def holders(me: int, present: set[int], owners: dict[int, int]) -> Holders:
    return Holders(me, frozenset(present), owners)


def test_a_lone_replica_takes_every_partition() -> None:
    assert to_take(holders(1, {1}, {}), 4) == [0, 1, 2, 3]
    assert to_release(holders(1, {1}, {}), 4) == []


def test_a_replica_joining_gets_half_and_the_first_gives_half_up() -> None:
    state = holders(1, {1, 2}, {0: 1, 1: 1, 2: 1, 3: 1})
    assert to_release(state, 4) == [2, 3]
    joined = holders(2, {1, 2}, {0: 1, 1: 1})
    assert to_take(joined, 4) == [2, 3]


def test_three_replicas_on_four_partitions_settle_at_two_one_one() -> None:
    # 2, 2, 0: one of the two gives one up, only the idle one takes it.
    assert to_release(holders(1, {1, 2, 3}, {0: 1, 1: 1, 2: 2, 3: 2}), 4) == [1]
    assert to_take(holders(1, {1, 2, 3}, {0: 1, 2: 2, 3: 2}), 4) == []
    assert to_take(holders(3, {1, 2, 3}, {0: 1, 2: 2, 3: 2}), 4) == [1]
    settled = {0: 1, 1: 3, 2: 2, 3: 2}
    for me in (1, 2, 3):
        state = holders(me, {1, 2, 3}, settled)
        assert to_release(state, 4) == [] and to_take(state, 4) == []


def test_a_dead_replicas_partitions_are_free_for_the_others() -> None:
    # Replica 2 crashed: its locks went with its session, so pg_locks shows them free.
    state = holders(1, {1}, {0: 1, 1: 1})
    assert to_take(state, 4) == [2, 3]


# ------------------------------------------------------------------ topology


async def test_one_key_always_lands_in_one_partition_and_keys_spread(bus: Bus) -> None:
    seen: dict[str, set[str]] = defaultdict(set)

    await bus.declare_service_queue(spec())
    for n in range(40):
        for _ in range(2):
            await bus.publish(inbound(customer(n), "hola"))
    # The gateway's way: many at once through the batcher, each with its key.
    batch = [inbound(customer(n), "hola") for n in range(40)]
    outcomes = await bus.publish_raw_many(
        [
            RawPublish(
                e.type, e.model_dump_json().encode(), e.type, e.event_id, key=e.partition_key()
            )
            for e in batch
        ]
    )
    assert outcomes == [None] * 40
    channel = await bus.connection.channel()
    try:
        for index in range(4):
            queue = await channel.get_queue(bus.names.queue(partition("work", index)))
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                seen[str((message.headers or {})[KEY_HEADER])].add(queue.name)
    finally:
        await channel.close()
    assert len(seen) == 40
    assert all(len(queues) == 1 for queues in seen.values()), seen
    spread = Counter(next(iter(queues)) for queues in seen.values())
    assert len(spread) == 4 and min(spread.values()) >= 4, spread


async def test_a_retry_returns_to_its_partition_and_a_dead_letter_to_the_dead_queue(
    bus: Bus,
) -> None:
    attempts: dict[str, list[int]] = defaultdict(list)

    async def failing(event: Event, delivery: Delivery) -> None:
        attempts[event.event_id].append(delivery.attempt)
        raise RuntimeError("not yet")

    # Only partition 1 is consumed: a retry that came back anywhere else would stay there.
    await bus.consume(spec(), failing, max_attempts=3, queues=["work.p1"])
    for n in range(40):
        await bus.publish(inbound(customer(n), "hola"))

    async def settled() -> bool:
        others = sum([await depth(bus, partition("work", i)) for i in (0, 2, 3)])
        return others + len(attempts) == 40 and await depth(bus, "work.dead") == len(attempts)

    await wait_for(settled, message="p1's messages dead after three attempts, the rest waiting")
    assert attempts and all(tries == [1, 2, 3] for tries in attempts.values()), attempts


async def test_another_count_is_refused_while_the_partitions_hold_messages(bus: Bus) -> None:
    await bus.declare_service_queue(spec(4))
    await bus.publish(inbound(customer(1), "hola"))
    with pytest.raises(PartitionMismatch, match="4 partitions"):
        await bus.declare_service_queue(spec(2))
    assert sum([await depth(bus, partition("work", i)) for i in range(4)]) == 1


async def test_another_count_replaces_empty_partitions(bus: Bus) -> None:
    await bus.declare_service_queue(spec(4))
    await bus.declare_service_queue(spec(2))
    assert await bus.message_count(bus.names.queue("work.p2")) is None
    assert await bus.message_count(bus.names.wait_queue("work.p3", 50)) is None
    for n in range(10):
        await bus.publish(inbound(customer(n), "hola"))
    assert await depth(bus, "work.p0") + await depth(bus, "work.p1") == 10


async def test_the_unpartitioned_queue_of_before_is_replaced_once_empty(bus: Bus) -> None:
    await bus.declare_service_queue(spec(0))
    await bus.publish(inbound(customer(1), "hola"))
    with pytest.raises(PartitionMismatch, match="no partitions"):
        await bus.declare_service_queue(spec(4))
    channel = await bus.connection.channel()
    try:
        await (await channel.get_queue(bus.names.queue("work"))).purge()
    finally:
        await channel.close()
    await bus.declare_service_queue(spec(4))
    assert await bus.message_count(bus.names.queue("work")) is None


# ------------------------------------------------------------------ leases


async def test_replicas_share_the_partitions_and_a_lost_one_is_taken_over(
    bus: Bus, database_url: str, db_schema: str
) -> None:
    async def ignore(event: Event, delivery: Delivery) -> None:
        pass

    replicas = []
    for _ in range(3):
        leases = PartitionLeases(database_url, db_schema, "work", 4, grace=1.0)
        await leases.start()
        leases.attach(await bus.consume(spec(single=True), ignore, queues=()))
        replicas.append(leases)

    async def balanced(expected: list[int]) -> bool:
        for leases in replicas:
            await leases.rebalance()
        return sorted(len(leases.held) for leases in replicas) == expected

    try:
        await wait_for(lambda: balanced([1, 1, 2]), message="1, 1 and 2 partitions")
        taken = [index for leases in replicas for index in leases.held]
        assert sorted(taken) == [0, 1, 2, 3]
        assert [sorted(r._consumer.consuming) for r in replicas] == [  # type: ignore[union-attr]
            sorted(partition("work", i) for i in r.held) for r in replicas
        ]
        crashed = replicas.pop()
        await crashed.close()  # its session ends: its locks are gone
        await wait_for(lambda: balanced([2, 2]), message="the survivors take its share")
    finally:
        for leases in replicas:
            await leases.close()


# ------------------------------------------------------------------ the keys


def test_every_event_of_one_customer_has_the_customers_key() -> None:
    from shared.events import HandoffRequestCommand, Identity
    from shared.signals import IdentityChanged, MessageEcho

    bsuid = "AR.13491208655302741918"
    phone_only = inbound("+5491155550001", "hola")
    both = inbound("+5491155550001", "hola", user_id=bsuid)
    bsuid_only = inbound(None, "hola", user_id=bsuid, username="@ana")
    assert phone_only.partition_key() == "+5491155550001"
    assert both.partition_key() == bsuid_only.partition_key() == bsuid  # the lasting one
    request = HandoffRequestCommand(customer_phone="5491155550001")  # Meta's wa_id form
    assert request.partition_key() == phone_only.partition_key()
    assert HandoffRequestCommand(customer_user_id=bsuid).partition_key() == bsuid
    echo = MessageEcho.model_validate(
        {
            "phone_number_id": "1",
            "wamid": "wamid.e",
            "timestamp": both.timestamp,
            "message_type": "text",
            "customer": Identity(phone="+5491155550001", user_id=bsuid),
        }
    )
    assert echo.partition_key() == bsuid
    changed = IdentityChanged.model_validate(
        {
            "phone_number_id": "1",
            "change": "user_changed_number",
            "previous": Identity(phone="+5491155550001"),
            "current": Identity(phone="+5491155550009"),
            "timestamp": both.timestamp,
        }
    )
    assert changed.partition_key() == "+5491155550001"  # where their earlier events are
    # An agent's messages: the agent's own key (their case is known only once read).
    assert inbound("+5491100000000", "/fin", name="Agente").partition_key() == "+5491100000000"
