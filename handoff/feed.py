"""``<prefix>.handoff.feed``: a bounded queue of what handoff publishes, for integrations.

A mandatory publish nobody is bound to comes back unroutable (an error, by design of the bus),
and ``handoff.requested``, ``handoff.claimed`` and ``bot.message`` may have no listener yet: the
feed keeps them routable and lets an integration read the recent history. Oldest dropped first.
"""

from __future__ import annotations

import logging

import aio_pika
import aiormq

from shared.bus import Bus
from shared.events import (
    BotMessage,
    HandoffClaimed,
    HandoffClosed,
    HandoffRequested,
    HandoffUnattended,
)

log = logging.getLogger("mensajero.handoff")

FEED_EVENTS = (
    HandoffRequested.TYPE,
    HandoffClaimed.TYPE,
    HandoffUnattended.TYPE,
    HandoffClosed.TYPE,
    BotMessage.TYPE,
)
FEED_MAX_LENGTH = 10_000
FEED_TTL_MS = 7 * 24 * 3600 * 1000


def feed_queue_name(bus: Bus) -> str:
    return f"{bus.names.queue('handoff')}.feed"


FEED_ARGUMENTS = {
    "x-max-length": FEED_MAX_LENGTH,
    "x-overflow": "drop-head",
    "x-message-ttl": FEED_TTL_MS,
}


class FeedQueue:
    """The feed as a resource: declared (and bound) at start; nothing to close.

    A quorum queue (it survives a broker node's loss). A classic feed declared by an earlier
    version cannot change type: it is kept, with a warning saying how to move on.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def start(self) -> None:
        name = feed_queue_name(self.bus)
        channel = await self.bus.connection.channel()
        try:
            queue = await channel.declare_queue(
                name, durable=True, arguments={"x-queue-type": "quorum", **FEED_ARGUMENTS}
            )
        except aiormq.exceptions.ChannelPreconditionFailed:
            log.warning(
                "%s is a classic queue from an earlier version and lives on one broker node; "
                "delete it (rabbitmqctl delete_queue %s: its history for integrations goes "
                "with it) and handoff declares it again as a quorum queue at its next start",
                name,
                name,
            )
            channel = await self.bus.connection.channel()
            queue = await channel.declare_queue(name, durable=True, arguments=FEED_ARGUMENTS)
        try:
            exchange = await channel.declare_exchange(
                self.bus.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            for key in FEED_EVENTS:
                await queue.bind(exchange, routing_key=key)
        finally:
            await channel.close()

    async def close(self) -> None:
        pass  # the queue outlives the process
