"""The message bus on RabbitMQ (aio-pika).

Topology, for a prefix ``P`` (``BUS_PREFIX``) and each consuming service ``S``:

- ``P``: one durable topic exchange; every event is published there with its type as the
  routing key.
- ``P.S``: the service's quorum queue, bound to the routing keys it handles, with
  ``x-delivery-limit`` (RabbitMQ 3.10 sets no default) and ``P.dlx`` as dead-letter exchange.
- ``P.dlx`` / ``P.S.dead``: where a message that keeps failing (or cannot be parsed) ends, for an
  operator to inspect and replay.
- ``P.S.retry.<ms>``: retry tiers. A failed message is re-published to the tier for its attempt,
  waits out the tier's fixed TTL (a per-message TTL is only checked at the queue's head) and is
  dead-lettered back into ``P.S``. Quorum queues like the others, so a message waiting for its
  retry survives the loss of a broker node, and dead-lettered ``at-least-once`` (kept until
  ``P.S`` confirmed it; that needs ``x-overflow: reject-publish``).
- Partitioned (``QueueSpec.partitions`` N > 0, handoff): ``P.S.hash``, a consistent-hash
  exchange (plugin ``rabbitmq_consistent_hash_exchange``) bound to ``P`` by the service's
  routing keys, hashes each message on its ``x-mensajero-key`` header (``Event.partition_key``,
  set by the publisher; the event id when it has none) into one of ``P.S.p0`` .. ``P.S.p<N-1>``,
  each a queue as above (single active consumer, dead letters to ``P.S.dead``) with its own
  tiers ``P.S.p<i>.retry.<ms>``, so a retry returns to its partition. A start with another
  count than the broker's refuses unless the old partitions are empty (then they are replaced).
- ``P.S.wait.<ms>``: the classic tiers of earlier versions (a queue cannot change type). They
  still drain into ``P.S`` by their own TTL; each is deleted once empty, at a later start.

Publishing is persistent, confirmed and ``mandatory``: a nack or an unroutable return raises,
never a silent success. It has a connection of its own (``shared.confirms``, named like the bus's
with ``.publish`` after it), reopened when lost; a publish that meets a reconnect is retried
until its deadline. Topology and consumers are on aio-pika's robust connection; a channel
aio-pika did not restore after a reconnect (the declaring one, or a consumer's) is opened again
by the bus (``Bus.watch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError
from yarl import URL

from shared import topology
from shared.confirms import Held, LinkDown, Nacked, Refused, Returned
from shared.consumer import ATTEMPT_HEADER as ATTEMPT_HEADER
from shared.consumer import ERROR_HEADER as ERROR_HEADER
from shared.consumer import Consumer as Consumer
from shared.consumer import Delivery as Delivery
from shared.consumer import Handler as Handler
from shared.consumer import Reject as Reject
from shared.consumer import RetryLater as RetryLater
from shared.events import Event
from shared.logs import describe
from shared.publishing import (
    Deadlines,
    Expired,
    PublishLink,
    SameIdTurns,
    expired,
    message_properties,
)

# Re-exported: the topology's names are part of the bus's interface.
from shared.topology import DEFAULT_RETRY_TIERS_MS as DEFAULT_RETRY_TIERS_MS
from shared.topology import KEY_HEADER as KEY_HEADER
from shared.topology import PARTITION_WEIGHT as PARTITION_WEIGHT
from shared.topology import Names as Names
from shared.topology import PartitionMismatch as PartitionMismatch
from shared.topology import QueueSpec as QueueSpec
from shared.topology import close_quietly
from shared.topology import partition as partition

log = logging.getLogger("mensajero.bus")

# The gateway parks events no queue is bound for in ``P.gateway.unrouted``, each with the
# routing key it was meant for in this header (replayed by ``python -m shared.replay``).
UNROUTED_SERVICE = "gateway.unrouted"
ROUTING_KEY_HEADER = "x-mensajero-routing-key"
PERSISTENT = 2  # AMQP delivery mode
# The publishing connection's name: the bus's, with this after it.
PUBLISHING_SUFFIX = ".publish"
# How long aio-pika has, once the connection is back, to restore a closed channel itself before
# the bus opens a new one (see Bus.watch); its restores take milliseconds.
CHANNEL_RESTORE_GRACE_SECONDS = 2.0


class BusError(Exception):
    """The broker did not take a message (nacked, unroutable, or unreachable past the deadline)."""


class BusUnavailable(BusError):
    pass


def _is_transient(error: BaseException) -> bool:
    # Any AMQP error but a return or a nack (handled before) is the connection or the channel
    # going away, or being restored: worth another try within the publish deadline.
    return isinstance(
        error,
        AMQPError | ConnectionError | asyncio.TimeoutError | RuntimeError,
    )


class Bus:
    """One robust connection, a confirmed publishing channel, and consumers."""

    def __init__(
        self, url: str, prefix: str, *, publish_timeout: float = 5.0, name: str | None = None
    ) -> None:
        self.url = url
        # The connection's name as the broker shows it (`rabbitmqctl list_connections
        # client_properties`), so an operator can tell the services' connections apart.
        self.name = name
        self.names = Names(prefix)
        self.publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._inspect_channel: AbstractChannel | None = None
        self._consumers: list[Consumer] = []
        self.declared: list[QueueSpec] = []  # what this bus declared, for delete_topology()
        self._publishing = SameIdTurns()
        self._deadlines = Deadlines()
        self._link: PublishLink | None = None
        self._revivals: dict[int, asyncio.Task[None]] = {}  # by id() of the channel (watch())
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def connect(self, *, timeout: float = 10.0) -> None:
        try:
            # A name given in the URL (``?name=``) wins: an operator's, or a test's.
            url_name = _url_name(self.url)
            properties: dict[str, Any] | None = (
                {"connection_name": self.name} if self.name and not url_name else None
            )
            self._connection = await asyncio.wait_for(
                aio_pika.connect_robust(self.url, client_properties=properties), timeout
            )
            base = url_name or self.name
            link = PublishLink(self.url, f"{base}{PUBLISHING_SUFFIX}" if base else None)
            await asyncio.wait_for(link.open(), timeout)
        except Exception as error:  # reported as one clear line
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
            raise BusUnavailable(
                f"cannot reach RabbitMQ at {_redact(self.url)}: {describe(error)}"
            ) from error
        self._link = link
        await self._open_declaring()

    async def _open_declaring(self) -> None:
        """The channel that declares the topology and answers /readyz, in place of the one before
        (closed, so that aio-pika does not restore it too). Publishes go on the link."""
        channel = await self.connection.channel()
        await channel.declare_exchange(
            self.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await channel.declare_exchange(self.names.dlx, aio_pika.ExchangeType.DIRECT, durable=True)
        old, self._channel = self._channel, channel
        self.watch(channel, self._open_declaring, lambda: self._channel is not channel)
        if old is not None:
            await close_quietly(old)

    def watch(
        self,
        channel: AbstractChannel,
        reopen: Callable[[], Awaitable[None]],
        replaced: Callable[[], bool],
    ) -> None:
        """Call ``reopen()`` (which replaces ``channel``) when ``channel`` closed and aio-pika did
        not restore it within ``CHANNEL_RESTORE_GRACE_SECONDS`` of the connection being back.
        aio-pika tries a robust channel's restore once when it closes and once per reconnect: one
        that fails (it ran while the connection was away: "No active transport") is not tried
        again while the connection stays up, so its consumer gets nothing and its publishes fail
        until the next reconnect (the sender stalled minutes so). ``replaced()``: True once
        ``channel`` is no longer in use (replaced, or its consumer stopped)."""

        def closed(_channel: object, _error: BaseException | None) -> None:
            # Synchronous: aio-pika awaits its close callbacks before its own restore.
            key = id(channel)
            if key not in self._revivals and not self._closing and not replaced():
                revival = asyncio.get_running_loop().create_task(
                    self._revive(channel, reopen, replaced)
                )
                self._revivals[key] = revival
                revival.add_done_callback(lambda _: self._revivals.pop(key, None))

        channel.close_callbacks.add(closed)

    async def _revive(
        self,
        channel: AbstractChannel,
        reopen: Callable[[], Awaitable[None]],
        replaced: Callable[[], bool],
    ) -> None:
        connection = self.connection
        while not connection.is_closed:
            await connection.ready()
            # A timer, not a wait for anything: aio-pika's own restore goes first.
            await asyncio.sleep(CHANNEL_RESTORE_GRACE_SECONDS)
            if self._closing or replaced() or not channel.is_closed:
                return
            if not connection.connected.is_set():
                continue  # away again: its reconnect may restore it yet
            log.warning("a channel was not restored after its connection came back; reopening it")
            try:
                await reopen()
                return
            except Exception as error:  # the connection went again: after it comes back
                log.warning("could not reopen the channel: %s", describe(error))

    async def close(self) -> None:
        self._closing = True
        revivals = list(self._revivals.values())
        for revival in revivals:
            revival.cancel()
        await asyncio.gather(*revivals, return_exceptions=True)
        for consumer in list(self._consumers):
            await consumer.stop(grace=0)
        if self._link is not None:
            await self._link.close()
        self._deadlines.close()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BusUnavailable("bus is not connected")
        return self._connection

    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def message_count(self, queue: str) -> int | None:
        """Messages ready in ``queue`` now; None when it does not exist or the broker does not
        answer (for the queue-depth metrics)."""
        if self._connection is None or not self._connection.connected.is_set():
            return None  # a channel opened now would be restored at the reconnect, then kept
        try:
            if self._inspect_channel is None or self._inspect_channel.is_closed:
                await self._drop_inspect_channel()
                self._inspect_channel = await self.connection.channel()
            # aiormq's declare, not aio-pika's: that one answers a passive declare of a queue it
            # declared before from memory, with the count of that time.
            channel = await self._inspect_channel.get_underlay_channel()
            declared = await channel.queue_declare(queue, passive=True)
        except Exception:  # a missing queue closes the channel: a new one next time
            await self._drop_inspect_channel()
            return None
        return int(declared.message_count or 0)

    async def _drop_inspect_channel(self) -> None:
        """Close the inspecting channel for good. Merely forgotten, aio-pika would restore it
        (after the broker closed it for a missing queue, and at every reconnect): one more open
        channel per check of a missing queue, until the connection's channel limit."""
        channel, self._inspect_channel = self._inspect_channel, None
        if channel is not None:
            await close_quietly(channel)

    async def ping(self) -> bool:
        """True when the broker answers now, both connections up (used by /readyz)."""
        if self._channel is None or not self.is_connected():
            return False
        if self._link is None or not self._link.connected:
            return False
        try:
            await asyncio.wait_for(
                self._channel.declare_exchange(
                    self.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
                ),
                2.0,
            )
        except Exception:
            return False
        return True

    # ------------------------------------------------------------------ topology

    async def declare_service_queue(self, spec: QueueSpec) -> None:
        """Declare the queues of ``spec`` (see shared.topology), settling a changed partition
        count first (PartitionMismatch while the old partitions hold messages)."""
        await topology.declare(self, spec)

    async def delete_topology(self, services: Iterable[QueueSpec] = ()) -> None:
        """Remove a prefix's queues (``services`` and those declared here) and exchanges."""
        await topology.delete(self, services)

    # ------------------------------------------------------------------ publishing

    async def publish(self, event: Event, *, timeout: float | None = None) -> None:
        """Publish one event and wait for the broker's confirm. Raises :class:`BusError`."""
        await self.publish_raw(
            routing_key=event.routing_key,
            body=event.model_dump_json().encode(),
            event_type=event.type,
            event_id=event.event_id,
            correlation_id=event.correlation_id,
            key=event.partition_key(),
            timeout=timeout,
        )

    async def publish_many(self, events: Sequence[Event], *, timeout: float | None = None) -> None:
        """Publish concurrently (confirms are pipelined); raises if any one is not confirmed."""
        results = await asyncio.gather(
            *(self.publish(event, timeout=timeout) for event in events), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def publish_raw(
        self,
        *,
        routing_key: str,
        body: bytes,
        event_type: str,
        event_id: str,
        correlation_id: str | None = None,
        headers: dict[str, Any] | None = None,
        exchange: str | None = None,
        key: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> None:
        """Publish one message, confirmed, within ``timeout`` seconds (or by ``deadline``, a
        ``time.monotonic()`` value). Raises :class:`BusError`. ``key``: the event's
        ``partition_key`` (``KEY_HEADER``; the event id when None), which partitioned queues
        hash on."""
        headers = _keyed(headers, key, event_id)
        if deadline is None:
            deadline = time.monotonic() + (timeout if timeout is not None else self.publish_timeout)
        # aiormq matches a broker's return to its publish by message id: publishes in flight
        # with the same id (one event published twice at once) would take each other's answer.
        if event_id in self._publishing:
            try:
                await self._publishing.wait_turn(event_id, deadline)
            except Expired:
                raise BusUnavailable("publish not confirmed before the deadline") from None
        else:
            self._publishing.enter(event_id)
        try:
            await self._publish_until(
                deadline, routing_key, body, event_type, event_id, correlation_id, headers, exchange
            )
        finally:
            self._publishing.leave(event_id)

    async def publish_raw_many(
        self, items: Sequence[RawPublish], *, timeout: float | None = None
    ) -> list[BusError | None]:
        """Publish every item at once, each confirmed on its own within one deadline: each
        one's outcome, in order (None: confirmed). As :meth:`publish_raw` for each, concurrently,
        but with one wait and one timer for all (a 1,000-update webhook is one call)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.publish_timeout)
        outcomes: list[BusError | None] = [None] * len(items)
        alone: list[int] = []  # each through publish_raw: its id is in flight, or a retry
        waiting: dict[asyncio.Future[Any], int] = {}
        link = self._link if self._link is not None and self._link.connected else None
        try:
            for index, item in enumerate(items):
                confirmation = self._start_publish(link, item)
                if confirmation is None:
                    alone.append(index)
                else:
                    waiting[confirmation] = index
            if waiting:
                await asyncio.wait(waiting, timeout=max(deadline - time.monotonic(), 0.0))
        finally:  # cancelled too: no turn is kept, no confirmation left waiting
            for confirmation, index in waiting.items():
                self._publishing.leave(items[index].event_id)
                if not confirmation.done():
                    confirmation.cancel()  # aiormq ignores a late answer
                    outcomes[index] = BusUnavailable(
                        f"publish of {items[index].event_type} not confirmed before the deadline"
                    )
        alone += _answered(items, waiting, outcomes)
        results = await asyncio.gather(
            *(self.publish_raw(**items[i].arguments(), deadline=deadline) for i in alone),
            return_exceptions=True,
        )
        for index, result in zip(alone, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, BusError):
                raise result
            outcomes[index] = result
        return outcomes

    def _start_publish(
        self, link: PublishLink | None, item: RawPublish
    ) -> asyncio.Future[Any] | None:
        """Write one item of a batch (its turn taken); None when it must go on its own through
        :meth:`publish_raw`: its id is in flight, or the link is down (then retried)."""
        if link is None or item.event_id in self._publishing:
            return None
        properties = _properties(
            item.event_id,
            item.event_type,
            item.correlation_id,
            _keyed(item.headers, item.key, item.event_id),
        )
        try:
            confirmation = link.publish(
                "" if item.exchange == "" else self.names.exchange,
                item.routing_key,
                properties,
                item.body,
                item.event_id,
            )
        except LinkDown:  # retried
            return None
        self._publishing.enter(item.event_id)
        return confirmation

    async def _publish_until(
        self,
        deadline: float,
        routing_key: str,
        body: bytes,
        event_type: str,
        event_id: str,
        correlation_id: str | None,
        headers: dict[str, Any] | None,
        exchange: str | None,
    ) -> None:
        properties = _properties(event_id, event_type, correlation_id, headers)
        exchange_name = "" if exchange == "" else self.names.exchange
        while True:
            if deadline - time.monotonic() <= 0:
                raise BusUnavailable(f"publish of {event_type} not confirmed before the deadline")
            try:
                if self._link is None:
                    raise LinkDown("bus is not connected")
                # The publishes of one loop turn go to the socket as one write (shared.confirms).
                confirmation = self._link.publish(
                    exchange_name, routing_key, properties, body, event_id
                )
                self._deadlines.watch(confirmation, deadline)
                await confirmation
                return
            except Refused as error:  # returned or nacked
                raise (_refusal(error, event_type, routing_key) or error) from error
            except asyncio.CancelledError:
                if expired(confirmation, deadline):
                    raise BusUnavailable(
                        f"publish of {event_type} not confirmed before the deadline"
                    ) from None
                raise
            except Exception as error:  # retried when transient
                if not _is_transient(error):
                    raise
                if self._closing:  # the link will not come back
                    raise BusUnavailable(f"publish of {event_type}: the bus is closing") from error
                if not isinstance(error, Held):  # a block is logged once, by the link
                    log.warning("publish interrupted, retrying: %s", describe(error))
                await self._wait_reconnected(deadline)

    async def _wait_reconnected(self, deadline: float) -> None:
        remaining = max(0.0, deadline - time.monotonic())
        if self._link is not None and await self._link.wait_ready(min(remaining, 1.0)):
            return
        await asyncio.sleep(min(max(0.0, deadline - time.monotonic()), 0.05))

    # ------------------------------------------------------------------ consuming

    async def consume(
        self,
        spec: QueueSpec,
        handler: Handler,
        *,
        concurrency: int = 16,
        key: Callable[[Event], str | None] | None = None,
        max_attempts: int | None = None,
        queues: Sequence[str] | None = None,
    ) -> Consumer:
        """Declare ``spec``'s topology and consume ``queues`` of it (None: all; see
        :meth:`Consumer.start`)."""
        await self.declare_service_queue(spec)
        consumer = Consumer(
            self, spec, handler, concurrency=concurrency, key=key, max_attempts=max_attempts
        )
        await consumer.start(queues)
        self._consumers.append(consumer)
        return consumer

    def _forget(self, consumer: Consumer) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)


class RawPublish(NamedTuple):
    """One message for :meth:`Bus.publish_raw_many` (the arguments of :meth:`Bus.publish_raw`).
    A tuple: a 1,000-update webhook makes a thousand (a frozen dataclass costs 4 times more)."""

    routing_key: str
    body: bytes
    event_type: str
    event_id: str
    correlation_id: str | None = None
    headers: dict[str, Any] | None = None
    exchange: str | None = None
    key: str | None = None  # the event's partition_key (see Bus.publish_raw)

    def arguments(self) -> dict[str, Any]:
        return self._asdict()


def _answered(
    items: Sequence[RawPublish],
    waiting: dict[asyncio.Future[Any], int],
    outcomes: list[BusError | None],
) -> list[int]:
    """The broker's answers to a batch into ``outcomes`` (a refusal, or None when confirmed);
    the indexes to try again on their own (their channel went away)."""
    again: list[int] = []
    for confirmation, index in waiting.items():
        item = items[index]
        if confirmation.cancelled():
            continue
        error = confirmation.exception()
        if error is not None:
            refusal = _refusal(error, item.event_type, item.routing_key)
            if refusal is None and not _is_transient(error):
                raise error
            if refusal is None:
                again.append(index)
            outcomes[index] = refusal
    return again


def _keyed(headers: dict[str, Any] | None, key: str | None, event_id: str) -> dict[str, Any]:
    """``headers`` with the partition key (kept when they carry one: a retry, a replay)."""
    return {KEY_HEADER: key or event_id, **(headers or {})}


def _properties(
    event_id: str, event_type: str, correlation_id: str | None, headers: dict[str, Any] | None
) -> bytes:
    return message_properties(event_id, event_type, correlation_id, headers or {})


def _refusal(error: BaseException, event_type: str, routing_key: str) -> BusError | None:
    """The broker's refusal of a publish as a BusError (None: not a refusal)."""
    if isinstance(error, Returned):
        refusal = BusError(f"{event_type} was returned unroutable ({routing_key})")
    elif isinstance(error, Nacked):
        refusal = BusError(f"{event_type} was nacked by the broker")
    else:
        return None
    refusal.__cause__ = error
    return refusal


def _url_name(url: str) -> str | None:
    """The connection name given in the URL (``?name=``), if any."""
    return URL(url).query.get("name") or None


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
