"""A consuming service's topology on the bus (see ``shared.bus`` for the whole picture): its
queue or partitions, their retry tiers and dead letters, declared at start; a changed partition
count settled (refused while the old partitions hold messages, else replaced); classic tiers of
earlier versions retired; a prefix removed (tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel

if TYPE_CHECKING:
    from shared.bus import Bus

log = logging.getLogger("mensajero.bus")

# A channel closed on the way out waits at most this long: on a connection that is gone its
# close would wait for the connection's return.
CLOSE_SECONDS = 2.0

# The key a partitioned queue hashes on (the event's ``partition_key``, else its id).
KEY_HEADER = "x-mensajero-key"
# Each partition's weight on the hash ring (points per binding): more points, an even spread.
PARTITION_WEIGHT = "20"
DEFAULT_RETRY_TIERS_MS: tuple[int, ...] = (1_000, 5_000, 30_000, 120_000, 600_000)


class PartitionMismatch(Exception):
    """A partitioned queue's partition count differs from the broker's, whose partitions still
    hold messages: changing it now would reorder (or strand) some customers' messages."""


@dataclass(frozen=True)
class QueueSpec:
    """A consuming service's queue and what it listens to."""

    service: str
    routing_keys: Sequence[str]
    delivery_limit: int = 20
    retry_tiers_ms: Sequence[int] = DEFAULT_RETRY_TIERS_MS
    # One consumer at a time across replicas (the others stand by): keeps per-conversation order.
    single_active_consumer: bool = False
    # > 0: that many partition queues behind a consistent-hash exchange (see the module).
    partitions: int = 0

    @property
    def queues(self) -> list[str]:
        """Its work queues, as the ``S`` of ``P.S``: the service, or each partition's."""
        if not self.partitions:
            return [self.service]
        return [partition(self.service, index) for index in range(self.partitions)]


def partition(service: str, index: int) -> str:
    return f"{service}.p{index}"


@dataclass
class Names:
    prefix: str

    @property
    def exchange(self) -> str:
        return self.prefix

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    def queue(self, service: str) -> str:
        return f"{self.prefix}.{service}"

    def hash_exchange(self, service: str) -> str:
        return f"{self.prefix}.{service}.hash"

    def dead_queue(self, service: str) -> str:
        return f"{self.prefix}.{service}.dead"

    def wait_queue(self, service: str, tier_ms: int) -> str:
        return f"{self.prefix}.{service}.retry.{tier_ms}"

    def legacy_wait_queue(self, service: str, tier_ms: int) -> str:
        """A classic retry tier of versions before 0.1.0's quorum tiers."""
        return f"{self.prefix}.{service}.wait.{tier_ms}"


async def declare(bus: Bus, spec: QueueSpec) -> None:
    if spec not in bus.declared:
        bus.declared.append(spec)
    if spec.partitions:
        await _settle_partitions(bus, spec)
    channel = await bus.connection.channel()
    try:
        names = bus.names
        exchange = await channel.declare_exchange(
            names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dlx = await channel.declare_exchange(names.dlx, aio_pika.ExchangeType.DIRECT, durable=True)
        dead = await channel.declare_queue(
            names.dead_queue(spec.service),
            durable=True,
            arguments={"x-queue-type": "quorum"},
        )
        await dead.bind(dlx, routing_key=spec.service)
        source, binding_keys = exchange, list(spec.routing_keys)
        if spec.partitions:
            source = await channel.declare_exchange(
                names.hash_exchange(spec.service),
                "x-consistent-hash",
                durable=True,
                arguments={"hash-header": KEY_HEADER},
            )
            for key in spec.routing_keys:
                await source.bind(exchange, routing_key=key)
            binding_keys = [PARTITION_WEIGHT]
        for name in spec.queues:
            queue = await channel.declare_queue(
                names.queue(name), durable=True, arguments=_work_arguments(spec, names)
            )
            for key in binding_keys:
                await queue.bind(source, routing_key=key)
            await _declare_tiers(bus, channel, name, spec.retry_tiers_ms)
    finally:
        await channel.close()
    await _retire_legacy_wait_queues(bus, spec)


async def _declare_tiers(
    bus: Bus, channel: AbstractChannel, name: str, tiers_ms: Sequence[int]
) -> None:
    for tier in tiers_ms:
        await channel.declare_queue(
            bus.names.wait_queue(name, tier),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": tier,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": bus.names.queue(name),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )


async def _settle_partitions(bus: Bus, spec: QueueSpec) -> None:
    """The broker's partitions of ``spec`` (or its unpartitioned queue of an earlier
    version) are the ones asked for, or are empty and replaced; else PartitionMismatch."""
    found: list[str] = []
    while await bus.message_count(bus.names.queue(partition(spec.service, len(found)))) is not None:
        found.append(partition(spec.service, len(found)))
    legacy = await bus.message_count(bus.names.queue(spec.service)) is not None
    if len(found) in (0, spec.partitions) and not legacy:
        return
    old = found + ([spec.service] if legacy else [])
    held = await _held(bus, old, spec.retry_tiers_ms)
    if held:
        raise PartitionMismatch(
            f"queue {spec.service} is split into {len(found) or 'no'} partitions on the "
            f"broker, which hold {held} message(s), and this start asks for "
            f"{spec.partitions}: start with the broker's count until they drain"
        )
    retired = [name for name in old if name not in spec.queues]
    await _delete_queues(bus, retired, spec.retry_tiers_ms)
    log.warning(
        "queue %s re-partitioned from %d into %d partitions (the old ones were empty)",
        spec.service,
        len(found),
        spec.partitions,
    )


async def _held(bus: Bus, names: Sequence[str], tiers_ms: Sequence[int]) -> int:
    """Messages waiting in the work queues ``names`` and their retry tiers."""
    queues = [bus.names.queue(name) for name in names]
    queues += [bus.names.wait_queue(name, tier) for name in names for tier in tiers_ms]
    return sum([await bus.message_count(queue) or 0 for queue in queues])


async def _delete_queues(bus: Bus, names: Sequence[str], tiers_ms: Sequence[int]) -> None:
    channel = await bus.connection.channel()
    try:
        for name in names:
            await channel.queue_delete(bus.names.queue(name))
            for tier in tiers_ms:
                await channel.queue_delete(bus.names.wait_queue(name, tier))
    finally:
        await close_quietly(channel)


async def _retire_legacy_wait_queues(bus: Bus, spec: QueueSpec) -> None:
    """Delete the classic tiers of an earlier version once they drained (nothing is
    published to them any more; their TTL moves what they hold back into the queue)."""
    for tier in spec.retry_tiers_ms:
        name = bus.names.legacy_wait_queue(spec.service, tier)
        channel = await bus.connection.channel()
        try:
            # Deleting a queue that does not exist succeeds: nothing to tell apart.
            await channel.queue_delete(name, if_empty=True)
        except aiormq.exceptions.ChannelPreconditionFailed:
            log.warning(
                "classic retry queue %s still holds messages; they return to %s by its TTL "
                "and it is deleted at a later start",
                name,
                bus.names.queue(spec.service),
            )
        finally:
            await close_quietly(channel)


async def delete(bus: Bus, services: Iterable[QueueSpec] = ()) -> None:
    """Remove a prefix's queues (``services`` and those declared here) and exchanges."""
    channel = await bus.connection.channel()
    try:
        exchanges = [bus.names.exchange, bus.names.dlx]
        for spec in [*services, *bus.declared]:
            names = [bus.names.dead_queue(spec.service)]
            for queue in {spec.service, *spec.queues}:
                names.append(bus.names.queue(queue))
                for tier in spec.retry_tiers_ms:
                    names += [
                        bus.names.wait_queue(queue, tier),
                        bus.names.legacy_wait_queue(queue, tier),
                    ]
            for name in names:
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
            if spec.partitions:
                exchanges.insert(0, bus.names.hash_exchange(spec.service))
        for exchange in exchanges:
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
    finally:
        await close_quietly(channel)


async def close_quietly(channel: AbstractChannel) -> None:
    """Close ``channel``, best effort and bounded (a channel already closed, or gone with its
    connection, is no error here)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(channel.close(), CLOSE_SECONDS)


def _work_arguments(spec: QueueSpec, names: Names) -> dict[str, Any]:
    """A work queue's arguments (a partition's too: its dead letters go to ``P.S.dead``)."""
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": names.dlx,
        "x-dead-letter-routing-key": spec.service,
    }
    if spec.single_active_consumer:
        arguments["x-single-active-consumer"] = True
    return arguments
