"""``<prefix>.<service>.feed``: a bounded queue of events a service publishes for integrations.

A mandatory publish nobody is bound to comes back unroutable (an error, by design of the bus),
and some events have no consumer in Mensajero (handoff's ``handoff.requested``, the gateway's
history, calls, ...): a feed keeps them routable and lets an integration read the recent
history. Bounded: the oldest are dropped first, past a length or an age.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aio_pika
import aiormq

from shared.bus import Bus

log = logging.getLogger("mensajero.feed")

FEED_MAX_LENGTH = 10_000
FEED_TTL_MS = 7 * 24 * 3600 * 1000
FEED_ARGUMENTS = {
    "x-max-length": FEED_MAX_LENGTH,
    "x-overflow": "drop-head",
    "x-message-ttl": FEED_TTL_MS,
}


def feed_queue_name(bus: Bus, service: str) -> str:
    return f"{bus.names.queue(service)}.feed"


class FeedQueue:
    """A service's feed as a resource: declared (and bound to ``event_types``) at start;
    nothing to close (the queue outlives the process).

    A quorum queue (it survives a broker node's loss). A classic feed declared by an earlier
    version cannot change type: it is kept, with a warning saying how to move on.
    """

    def __init__(self, bus: Bus, service: str, event_types: Sequence[str]) -> None:
        self.bus = bus
        self.service = service
        self.event_types = tuple(event_types)
        self.name = feed_queue_name(bus, service)

    async def start(self) -> None:
        name = self.name
        channel = await self.bus.connection.channel()
        try:
            queue = await channel.declare_queue(
                name, durable=True, arguments={"x-queue-type": "quorum", **FEED_ARGUMENTS}
            )
        except aiormq.exceptions.ChannelPreconditionFailed:
            log.warning(
                "%s is a classic queue from an earlier version and lives on one broker node; "
                "delete it (rabbitmqctl delete_queue %s: its history for integrations goes "
                "with it) and %s declares it again as a quorum queue at its next start",
                name,
                name,
                self.service,
            )
            channel = await self.bus.connection.channel()
            queue = await channel.declare_queue(name, durable=True, arguments=FEED_ARGUMENTS)
        try:
            exchange = await channel.declare_exchange(
                self.bus.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            for key in self.event_types:
                await queue.bind(exchange, routing_key=key)
        finally:
            await channel.close()

    async def close(self) -> None:
        pass  # the queue outlives the process
