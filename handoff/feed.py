"""``<prefix>.handoff.feed``: a bounded queue of what handoff publishes, for integrations.

A mandatory publish nobody is bound to comes back unroutable (an error, by design of the bus),
and ``handoff.requested``, ``handoff.claimed`` and ``bot.message`` may have no listener yet: the
feed keeps them routable and lets an integration read the recent history. Oldest dropped first.
"""

from __future__ import annotations

import aio_pika

from shared.bus import Bus
from shared.events import (
    BotMessage,
    HandoffClaimed,
    HandoffClosed,
    HandoffRequested,
    HandoffUnattended,
)

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


class FeedQueue:
    """The feed as a resource: declared (and bound) at start; nothing to close."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def start(self) -> None:
        channel = await self.bus.connection.channel()
        try:
            exchange = await channel.declare_exchange(
                self.bus.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(
                feed_queue_name(self.bus),
                durable=True,
                arguments={
                    "x-max-length": FEED_MAX_LENGTH,
                    "x-overflow": "drop-head",
                    "x-message-ttl": FEED_TTL_MS,
                },
            )
            for key in FEED_EVENTS:
                await queue.bind(exchange, routing_key=key)
        finally:
            await channel.close()

    async def close(self) -> None:
        pass  # the queue outlives the process
