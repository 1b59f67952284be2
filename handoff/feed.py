"""``<prefix>.handoff.feed``: a bounded queue of what handoff publishes, for integrations.

``handoff.requested``, ``handoff.claimed`` and ``bot.message`` may have no listener yet: the
feed (:mod:`shared.feed`) keeps them routable and lets an integration read the recent history.
"""

from __future__ import annotations

from shared import feed
from shared.bus import Bus
from shared.events import (
    BotMessage,
    HandoffClaimed,
    HandoffClosed,
    HandoffRequested,
    HandoffUnattended,
)
from shared.feed import FEED_ARGUMENTS, FEED_MAX_LENGTH, FEED_TTL_MS

__all__ = ["FEED_ARGUMENTS", "FEED_EVENTS", "FEED_MAX_LENGTH", "FEED_TTL_MS", "FeedQueue"]

FEED_EVENTS = (
    HandoffRequested.TYPE,
    HandoffClaimed.TYPE,
    HandoffUnattended.TYPE,
    HandoffClosed.TYPE,
    BotMessage.TYPE,
)


def feed_queue_name(bus: Bus) -> str:
    return feed.feed_queue_name(bus, "handoff")


class FeedQueue(feed.FeedQueue):
    """Handoff's feed, declared and bound at start."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, "handoff", FEED_EVENTS)
