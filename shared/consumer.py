"""Consuming a service's work queues (``Bus.consume``): the handler's outcome decides the
message's fate. Returned: acked. ``RetryLater``: re-published to a retry tier
(``P.S.retry.<ms>``, see :mod:`shared.bus`) with its attempt counted in ``x-mensajero-attempt``.
``Reject``, an unreadable body, or the last attempt: dead-lettered to ``P.S.dead``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError
from pydantic import ValidationError

from shared.events import Event, UnknownEventType, parse_event
from shared.topology import QueueSpec, close_quietly

if TYPE_CHECKING:
    from shared.bus import Bus

log = logging.getLogger("mensajero.bus")

# A subscription's try on a channel that may be dead (Consumer.resume), and the pause after one
# that failed while the channel was not replaced yet.
SUBSCRIBE_TRY_SECONDS = 5.0
SUBSCRIBE_RETRY_SECONDS = 0.2
# What a channel that died (its connection gone, or closed and not restored yet) raises.
_DEAD_CHANNEL = (TimeoutError, ChannelInvalidStateError, AMQPConnectionError)
ATTEMPT_HEADER = "x-mensajero-attempt"
ERROR_HEADER = "x-mensajero-error"


class RetryLater(Exception):  # it is a signal, not an error
    """Raised by a handler: try this message again after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Reject(Exception):
    """Raised by a handler: this message can never succeed; dead-letter it now."""


@dataclass
class Delivery:
    """What a handler knows about the delivery besides the event."""

    attempt: int  # 1 on the first delivery
    redelivered: bool


Handler = Callable[[Event, Delivery], Awaitable[None]]


@dataclass
class Consumer:
    """Consumes a service's work queues (one, or the partitions it was given): ack after the
    handler returns, retry tiers, dead-letter.

    With ``key``, messages that share a key run one after another in arrival order while other
    keys run concurrently (up to ``concurrency`` per queue).
    """

    bus: Bus
    spec: QueueSpec
    handler: Handler
    concurrency: int = 16
    key: Callable[[Event], str | None] | None = None
    max_attempts: int | None = None
    _channel: AbstractChannel | None = None
    _queues: dict[str, tuple[AbstractQueue, str]] = field(default_factory=dict)
    _in_flight: dict[str, set[asyncio.Task[None]]] = field(default_factory=dict)
    _tails: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    _stopped: bool = False

    @property
    def attempts_allowed(self) -> int:
        return self.max_attempts or len(self.spec.retry_tiers_ms) + 1

    @property
    def consuming(self) -> list[str]:
        """The work queues (``S`` of ``P.S``) it takes messages from now."""
        return list(self._queues)

    async def start(self, queues: Sequence[str] | None = None) -> None:
        """Consume ``queues`` (None: every work queue of the spec; empty: none yet)."""
        self._use(await self._open_channel())
        for name in self.spec.queues if queues is None else queues:
            await self.resume(name)

    async def resume(self, name: str) -> None:
        """Take messages from the work queue ``name`` too, on the channel in use once subscribed.

        A dead channel's calls wait for its restore, for ever when aio-pika's failed and the bus
        replaced the channel (``Bus.watch``): each try is bounded, and one that ends on a
        replaced channel is made again on its successor (unless that took ``name`` already)."""
        while not self._stopped and self._channel is not None and name not in self._queues:
            channel = self._channel
            try:
                subscribed = await asyncio.wait_for(
                    self._subscribe(channel, name), SUBSCRIBE_TRY_SECONDS
                )
            except Exception as error:
                if self._channel is not channel:
                    continue  # replaced meanwhile: the try is made on its successor
                if not isinstance(error, _DEAD_CHANNEL):
                    raise  # a refusal (a missing queue, say): no try would do better
                await asyncio.sleep(SUBSCRIBE_RETRY_SECONDS)  # its restore, or the bus's
                continue
            if self._channel is channel:
                self._queues[name] = subscribed
                return
            # Subscribed on the replaced channel, which is closing: again on the new one.

    async def _open_channel(self) -> AbstractChannel:
        channel = await self.bus.connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.concurrency)
        return channel

    def _use(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self.bus.watch(channel, self._reopen, lambda: self._stopped or self._channel is not channel)

    async def _subscribe(self, channel: AbstractChannel, name: str) -> tuple[AbstractQueue, str]:
        queue = await channel.get_queue(self.bus.names.queue(name))
        tag = await queue.consume(functools.partial(self._on_message, name), no_ack=False)
        return queue, tag

    async def _reopen(self) -> None:
        """Consume every queue again on a new channel, in place of one that aio-pika did not
        restore (``Bus.watch``); the old one is closed, so that it is not restored later too."""
        channel = await self._open_channel()
        queues: dict[str, tuple[AbstractQueue, str]] = {}
        try:
            # Until it holds every queue in use, one resumed meanwhile included.
            while missing := [name for name in self._queues if name not in queues]:
                for name in missing:
                    queues[name] = await self._subscribe(channel, name)
        except BaseException:
            await close_quietly(channel)
            raise
        if self._stopped:  # stopped meanwhile
            await close_quietly(channel)
            return
        # Swapped with no wait since the check above: nothing resumed in between is dropped.
        old, in_use = self._channel, self._queues
        self._queues = {name: queues[name] for name in in_use}
        self._use(channel)
        for name in set(queues) - set(in_use):  # paused meanwhile: not taken again
            queue, tag = queues[name]
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        if old is not None:
            await close_quietly(old)

    async def pause(self, name: str, *, grace: float = 10.0) -> None:
        """Stop taking messages from ``name``; its in-flight ones finish within ``grace`` (the
        rest go back to the queue, in order, for the next consumer)."""
        queue, tag = self._queues.pop(name, (None, None))
        if queue is not None and tag is not None:
            # Bounded: on a connection that is gone the cancel would wait for its return.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), max(grace, 1.0))
        await self._drain(self._in_flight.get(name, set()), grace)

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop taking messages, let in-flight ones finish within ``grace``, then close."""
        self._stopped = True
        await asyncio.gather(*(self.pause(name, grace=grace) for name in list(self._queues)))
        await self._drain({task for tasks in self._in_flight.values() for task in tasks}, grace)
        if self._channel is not None:
            await close_quietly(self._channel)
            self._channel = None
        self.bus._forget(self)

    async def _drain(self, tasks: set[asyncio.Task[None]], grace: float) -> None:
        if not tasks:
            return
        _done, pending = await asyncio.wait(set(tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d in-flight message(s) left for redelivery", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _on_message(self, name: str, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        tasks = self._in_flight.setdefault(name, set())
        if task is not None:
            tasks.add(task)
        try:
            await self._process(name, message)
        finally:
            if task is not None:
                tasks.discard(task)

    async def _process(self, name: str, message: AbstractIncomingMessage) -> None:
        try:
            event = parse_event(message.type or "", message.body)
        except (UnknownEventType, ValidationError, ValueError) as error:
            log.error(
                "unreadable message dead-lettered: queue=%s type=%s error=%s",
                self.spec.service,
                message.type,
                str(error).splitlines()[0],
            )
            await message.reject(requeue=False)
            return

        # Register in this key's chain before any await, so arrival order is kept.
        key = self.key(event) if self.key is not None else None
        previous: asyncio.Future[None] | None = None
        mine: asyncio.Future[None] | None = None
        if key is not None:
            previous = self._tails.get(key)
            mine = asyncio.get_running_loop().create_future()
            self._tails[key] = mine
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await self._handle(name, event, message)
        finally:
            if mine is not None and key is not None:
                mine.set_result(None)
                if self._tails.get(key) is mine:
                    del self._tails[key]

    async def _handle(self, name: str, event: Event, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        previous_attempts = headers.get(ATTEMPT_HEADER, 0)
        attempt = (previous_attempts if isinstance(previous_attempts, int) else 0) + 1
        delivery = Delivery(attempt=attempt, redelivered=bool(message.redelivered))
        try:
            await self.handler(event, delivery)
        except asyncio.CancelledError:
            # Shutting down mid-message: give it back, it will be redelivered.
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            raise
        except Reject as error:
            log.error(
                "message rejected: type=%s id=%s reason=%s", event.type, event.event_id, error
            )
            await message.reject(requeue=False)
            return
        except Exception as error:  # every failure is retried or dead-lettered
            await self._retry_or_dead_letter(name, event, message, attempt, error)
            return
        await message.ack()

    async def _retry_or_dead_letter(
        self,
        name: str,
        event: Event,
        message: AbstractIncomingMessage,
        attempt: int,
        error: Exception,
    ) -> None:
        """Park it in the wait tier of its own queue ``name`` (a partition's: it returns there)."""
        reason = f"{type(error).__name__}: {error}"
        tiers = list(self.spec.retry_tiers_ms)
        if attempt >= self.attempts_allowed or not tiers:
            log.error(
                "message dead-lettered after %d attempt(s): type=%s id=%s error=%s",
                attempt,
                event.type,
                event.event_id,
                reason,
            )
            await message.reject(requeue=False)
            return
        delay = error.delay if isinstance(error, RetryLater) else None
        tier = _choose_tier(tiers, attempt, delay)
        if not isinstance(error, RetryLater):
            log.warning(
                "handler failed, retrying in %d ms: type=%s id=%s attempt=%d error=%s",
                tier,
                event.type,
                event.event_id,
                attempt,
                reason,
            )
        try:
            await self.bus.publish_raw(
                routing_key=self.bus.names.wait_queue(name, tier),
                body=message.body,
                event_type=event.type,
                event_id=event.event_id,
                correlation_id=event.correlation_id,
                headers={
                    **(message.headers or {}),
                    ATTEMPT_HEADER: attempt,
                    ERROR_HEADER: reason[:500],
                },
                exchange="",
            )
        except Exception:  # could not park it: let the broker redeliver it
            log.exception("could not schedule a retry; returning the message to the queue")
            await message.nack(requeue=True)
            return
        await message.ack()


def _choose_tier(tiers: list[int], attempt: int, delay: float | None) -> int:
    """The wait tier for a retry: the first at least ``delay``, else by attempt (exponential)."""
    if delay is not None:
        wanted = int(delay * 1000)
        for tier in tiers:
            if tier >= wanted:
                return tier
        return tiers[-1]
    return tiers[min(attempt - 1, len(tiers) - 1)]
