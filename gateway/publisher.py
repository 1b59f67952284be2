"""Publishing a request's events with confirms, and parking what no queue is bound for.

A webhook is answered 200 only when every one of its events is confirmed by the broker. An event
whose routing key has no queue bound (a consumer service that has never started, or an event type
no service consumes yet) comes back returned; dropping it would lose data and refusing it would
make Meta retry, for days, something no retry can fix. It is parked instead in the gateway's own
durable queue ``<prefix>.gateway.unrouted`` (confirmed too), with its routing key in a header, for
an operator to replay once its consumer exists (``python -m shared.replay unrouted``).

Events no Mensajero service consumes, only integrations (past chats, contacts, calls, a
number's name, a template's texts, fields no model covers), are not parked forever: they go to
the gateway's feed, ``<prefix>.gateway.feed`` (:mod:`shared.feed`: bounded, oldest dropped).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.metrics import Metrics
from shared.bus import ROUTING_KEY_HEADER, UNROUTED_SERVICE, Bus, BusError, RawPublish
from shared.confirms import Returned
from shared.events import Event
from shared.feed import FeedQueue
from shared.logs import fields
from shared.signals import (
    CallEvent,
    CallStatus,
    ContactsSynced,
    HistoryChunk,
    PhoneNumberName,
    TemplateComponentsUpdate,
    UnhandledField,
)

log = logging.getLogger("mensajero.gateway.publisher")

__all__ = [
    "FEED_EVENTS",
    "ROUTING_KEY_HEADER",
    "UNROUTED_SERVICE",
    "EventPublisher",
    "Outgoing",
    "Publisher",
    "feed",
]

# Informational events: for integrations, no Mensajero service consumes them (shared.catalog).
FEED_EVENTS = (
    HistoryChunk.TYPE,
    ContactsSynced.TYPE,
    CallEvent.TYPE,
    CallStatus.TYPE,
    PhoneNumberName.TYPE,
    TemplateComponentsUpdate.TYPE,
    UnhandledField.TYPE,
)


def feed(bus: Bus) -> FeedQueue:
    """``<prefix>.gateway.feed``, bound to :data:`FEED_EVENTS`."""
    return FeedQueue(bus, "gateway", FEED_EVENTS)


@dataclass(frozen=True)
class Outgoing:
    """An event and its serialised body."""

    event: Event
    body: bytes


class EventPublisher(Protocol):
    """The port: where a request's events go, all confirmed or an error."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, items: Sequence[Outgoing]) -> None:
        """Every item confirmed within the deadline; :class:`BusError` otherwise."""


class Publisher:
    """The port on the broker: confirmed publishes, with the unrouted parking queue."""

    def __init__(self, bus: Bus, metrics: Metrics, timeout: float) -> None:
        self.bus = bus
        self.metrics = metrics
        self.timeout = timeout
        self.unrouted_queue = bus.names.queue(UNROUTED_SERVICE)

    async def start(self) -> None:
        """Declare the unrouted safety queue (durable, quorum, like every service queue)."""
        channel = await self.bus.connection.channel()
        try:
            await channel.declare_queue(
                self.unrouted_queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
        finally:
            await channel.close()

    async def close(self) -> None:
        pass  # the bus is closed by its own resource (shared.resources.BrokerConnection)

    async def publish(self, items: Sequence[Outgoing]) -> None:
        """Publish all, confirmed, within the timeout. Raises :class:`BusError` otherwise."""
        if not items:
            return
        started = time.monotonic()
        deadline = started + self.timeout
        # Each publish is bounded by the deadline (its turn, its confirm, a reconnect: see
        # shared.bus); no socket write is awaited on the way, so no outer timeout is needed.
        if len(items) == 1:
            await self._one(items[0], deadline)
        else:
            await self._many(items, deadline)
        self.metrics.confirm_seconds.observe(time.monotonic() - started)

    async def _one(self, item: Outgoing, deadline: float) -> None:
        event = item.event
        try:
            await self.bus.publish_raw(
                routing_key=event.type,
                body=item.body,
                event_type=event.type,
                event_id=event.event_id,
                correlation_id=event.correlation_id,
                key=event.partition_key(),  # what handoff's partitions hash on
                deadline=deadline,
            )
        except BusError as error:
            if not isinstance(error.__cause__, Returned):
                raise
            await self._park(item, deadline)
            return
        self.metrics.events_published(event.type)

    async def _many(self, items: Sequence[Outgoing], deadline: float) -> None:
        """All at once (one wait for every confirm); the returned ones parked, at once too."""
        timeout = max(deadline - time.monotonic(), 0.001)
        outcomes = await self.bus.publish_raw_many(
            [
                RawPublish(item.event.type, item.body, item.event.type, item.event.event_id,
                           item.event.correlation_id, key=item.event.partition_key())
                for item in items
            ],
            timeout=timeout,
        )  # fmt: skip
        returned: list[Outgoing] = []
        published: dict[str, int] = {}  # counted once per type: a counter's inc costs ~1.5 us
        try:
            for item, outcome in zip(items, outcomes, strict=True):
                if outcome is None:
                    published[item.event.type] = published.get(item.event.type, 0) + 1
                elif isinstance(outcome.__cause__, Returned):
                    returned.append(item)
                else:
                    raise outcome
        finally:
            for event_type, count in published.items():
                self.metrics.events_published(event_type, count)
        if not returned:
            return
        parked = await self.bus.publish_raw_many(
            [self._parking(item) for item in returned],
            timeout=max(deadline - time.monotonic(), 0.001),
        )
        for item, outcome in zip(returned, parked, strict=True):
            if outcome is not None:
                raise outcome
            self._parked(item.event)

    def _parking(self, item: Outgoing) -> RawPublish:
        """The publish that parks ``item`` in the unrouted queue, its routing key in a header."""
        event = item.event
        return RawPublish(
            routing_key=self.unrouted_queue,
            body=item.body,
            event_type=event.type,
            event_id=event.event_id,
            correlation_id=event.correlation_id,
            headers={ROUTING_KEY_HEADER: event.type},
            exchange="",
            key=event.partition_key(),  # kept for its replay into handoff's partitions
        )

    def _parked(self, event: Event) -> None:
        self.metrics.unrouted.labels(event.type).inc()
        self.metrics.events_published(event.type)
        log.warning(
            "no queue bound for this event type: parked in the unrouted queue",
            extra=fields(type=event.type, event_id=event.event_id, queue=self.unrouted_queue),
        )

    async def _park(self, item: Outgoing, deadline: float) -> None:
        await self.bus.publish_raw(
            **self._parking(item).arguments(), timeout=max(deadline - time.monotonic(), 0.001)
        )
        self._parked(item.event)
