"""Confirmed publishes written together: one socket write per event-loop turn, not per message.

aiormq's ``basic_publish`` puts each message on the connection's write queue on its own, and its
writer task hands each to the socket as it comes: one ``send`` system call per event, the
largest cost of a confirmed publish after the broker's (on loopback, a send also does the
receiving side's TCP work). :class:`PublishBatcher` collects every publish asked for during one
turn of the event loop (one webhook's events, and those of the other webhooks that arrived in
the same turn), numbers them with the channel's delivery tags, marshals their frames and puts
them on the write queue as one frame, which the writer writes at once. Each publish still has
its own confirmation future, exactly as aiormq registers it (``confirmations`` by delivery tag,
``message_id_delivery_tag`` for a return), so the broker's acks, nacks and returns resolve it as
before, and a channel that closes rejects it.

Every publish on a channel given to a batcher must go through it: delivery tags are numbered
here, without aiormq's channel lock (the numbering and the put happen in one synchronous step).
"""

from __future__ import annotations

import asyncio
import collections
import struct
import time
from dataclasses import dataclass
from typing import Any

import aiormq
import pamqp.encode
import pamqp.frame
from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError
from pamqp import commands as spec

_BODY_FRAME = 3
_FRAME_END = b"\xce"
DRAIN_CHECK_SECONDS = 1.0


_HEADER_FRAME = 2
_PERSISTENT_JSON = b"\x10application/json"  # content_type, as a shortstr
_PERSISTENT = b"\x02"  # delivery_mode
_NO_HEADERS = b"\x00\x00\x00\x00"  # an empty table
# Property flags (AMQP 0-9-1, 4.2.6.1), in wire order.
_CONTENT_TYPE, _HEADERS, _DELIVERY_MODE = 0x8000, 0x2000, 0x1000
_CORRELATION_ID, _MESSAGE_ID, _TYPE = 0x0400, 0x0080, 0x0020


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


def message_properties(
    message_id: str, message_type: str, correlation_id: str | None, headers: dict[str, Any]
) -> bytes:
    """The Basic properties of a persistent JSON message, encoded (flags, then values) as pamqp
    encodes them (tests/shared/test_publishing.py): pamqp's generic encoder cost more than the
    rest of a publish's framing. An empty string is left out, as pamqp leaves it."""
    flags = _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE
    parts = [b"", _PERSISTENT_JSON, _table(headers) if headers else _NO_HEADERS]
    parts.append(_PERSISTENT)
    if correlation_id:
        flags |= _CORRELATION_ID
        parts.append(_shortstr(correlation_id))
    if message_id:
        flags |= _MESSAGE_ID
        parts.append(_shortstr(message_id))
    if message_type:
        flags |= _TYPE
        parts.append(_shortstr(message_type))
    parts[0] = struct.pack(">H", flags)
    return b"".join(parts)


def _table(headers: dict[str, Any]) -> bytes:
    """A field table as pamqp encodes it; text values (every publish's partition key) written
    here, in pamqp's order (sorted keys), since pamqp's generic encoder costs a few
    microseconds per publish. Anything else, or a key pamqp would truncate, goes to pamqp."""
    data: list[bytes] = []
    for key, value in sorted(headers.items()):
        if type(value) is not str or type(key) is not str:
            return pamqp.encode.field_table(headers)
        name, text = key.encode(), value.encode()
        if len(name) > 128:
            return pamqp.encode.field_table(headers)
        data += (bytes((len(name),)), name, b"S", struct.pack(">I", len(text)), text)
    table = b"".join(data)
    return struct.pack(">I", len(table)) + table


@dataclass(slots=True)
class _Pending:
    channel: aiormq.Channel
    exchange: str
    routing_key: str
    message_id: str
    properties: bytes
    body: bytes
    confirmation: asyncio.Future[Any]


class PublishBatcher:
    """Mandatory publishes on aiormq channels, marshalled and queued together once per turn."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._scheduled = False
        # Frames the write queue (bounded) had no room for, put in order by one task.
        self._backlog: collections.deque[tuple[aiormq.Channel, ChannelFrame]] = collections.deque()
        self._draining: asyncio.Task[None] | None = None
        self._publish_frames: dict[tuple[int, str, str], bytes] = {}

    def publish(
        self,
        channel: aiormq.Channel,
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        message_id: str,
        properties: bytes,
    ) -> asyncio.Future[Any]:
        """The future of the broker's answer: an ack's frame, or PublishError (returned,
        ``mandatory``), DeliveryError (nacked), or the channel's close reason.

        ``properties``: encoded (:func:`message_properties`), their ``message_id`` given too
        (a return names its publish by it)."""
        if channel.is_closed:
            raise ChannelInvalidStateError(f"{channel!r} closed")
        confirmation: asyncio.Future[Any] = channel.create_future()
        self._pending.append(
            _Pending(channel, exchange, routing_key, message_id, properties, body, confirmation)
        )
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return confirmation

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        # Normally one channel; after a reconnect publishes may name the old one too.
        frames: dict[aiormq.Channel, list[bytes]] = {}
        for item in pending:
            if item.confirmation.done():  # its publisher gave up before the write
                continue
            channel = item.channel
            if channel.is_closed:
                item.confirmation.set_exception(ChannelInvalidStateError(f"{channel!r} closed"))
                continue
            frames.setdefault(channel, []).extend(self._register(item))
        for channel, parts in frames.items():
            self._put(channel, ChannelFrame(payload=b"".join(parts), should_close=False))

    def _register(self, item: _Pending) -> list[bytes]:
        """The publish's frames, its delivery tag and return lookup registered as aiormq does."""
        channel = item.channel
        channel.delivery_tag += 1
        tag = channel.delivery_tag
        message_id = item.message_id
        channel.confirmations[tag] = item.confirmation
        if message_id:
            channel.message_id_delivery_tag[message_id] = tag

            def forget(_: asyncio.Future[Any]) -> None:
                if channel.message_id_delivery_tag.get(message_id) == tag:
                    del channel.message_id_delivery_tag[message_id]

            item.confirmation.add_done_callback(forget)
        number = channel.number
        body = item.body
        parts = [
            self._publish_frame(number, item.exchange, item.routing_key),
            struct.pack(
                ">BHIHHQ", _HEADER_FRAME, number, 12 + len(item.properties), 60, 0, len(body)
            ),
            item.properties,
            _FRAME_END,
        ]
        size = channel.max_content_size
        for start in range(0, len(body), size):
            chunk = body[start : start + size]
            parts += (struct.pack(">BHI", _BODY_FRAME, number, len(chunk)), chunk, _FRAME_END)
        return parts

    def _publish_frame(self, number: int, exchange: str, routing_key: str) -> bytes:
        key = (number, exchange, routing_key)
        frame = self._publish_frames.get(key)
        if frame is None:
            if len(self._publish_frames) > 1024:  # routing keys are event types: a few
                self._publish_frames.clear()
            method = spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True)
            frame = self._publish_frames[key] = pamqp.frame.marshal(method, number)
        return frame

    def _put(self, channel: aiormq.Channel, frame: ChannelFrame) -> None:
        if not self._backlog:
            try:
                channel.write_queue.put_nowait(frame)
                return
            except asyncio.QueueFull:
                pass
        # Behind what is waiting already: delivery tags must reach the broker in their order.
        self._backlog.append((channel, frame))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._backlog:
            channel, frame = self._backlog[0]
            # A channel that closed meanwhile has rejected these publishes' confirmations; its
            # connection's queue may never have room again.
            while not channel.is_closed:
                try:
                    await asyncio.wait_for(channel.write_queue.put(frame), DRAIN_CHECK_SECONDS)
                    break
                except TimeoutError:
                    continue
            self._backlog.popleft()


# --- waiting for the broker, and one publish per message id at a time (used by shared.bus)


class Expired(Exception):
    """A publish's deadline passed before the broker answered it."""


async def confirmed(confirmation: asyncio.Future[Any], deadline: float) -> None:
    """Wait for the broker's answer until ``deadline`` (monotonic): one timer, not a Timeout
    context per publish. Past it, the confirmation is cancelled (aiormq ignores a late ack)."""
    if confirmation.done():
        confirmation.result()
        return
    loop = asyncio.get_running_loop()
    expired = False

    def expire() -> None:
        nonlocal expired
        if not confirmation.done():
            expired = True
            confirmation.cancel()

    timer = loop.call_at(loop_time(deadline), expire)
    try:
        await confirmation
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if expired and (task is None or task.cancelling() == 0):
            raise Expired from None
        raise
    finally:
        timer.cancel()


def loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


class SameIdTurns:
    """Publishes of one message id, one after another (a queue of waiters per id in flight)."""

    def __init__(self) -> None:
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._waiting

    def enter(self, key: str) -> None:
        self._waiting[key] = collections.deque()

    async def wait_turn(self, key: str, deadline: float) -> None:
        """Wait until the publishes ahead with ``key`` are done; the turn is then ours."""
        turn = asyncio.get_running_loop().create_future()
        self._waiting[key].append(turn)
        try:
            async with asyncio.timeout_at(loop_time(deadline)):
                await turn
        except TimeoutError:
            self._abandon(key, turn)
            raise Expired from None
        except BaseException:
            self._abandon(key, turn)
            raise

    def _abandon(self, key: str, turn: asyncio.Future[None]) -> None:
        if turn.done() and not turn.cancelled():
            self.leave(key)  # it was handed to us just as we gave up: pass it on
        else:
            turn.cancel()

    def leave(self, key: str) -> None:
        waiting = self._waiting.get(key)
        if waiting is None:
            return
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the next publish of this id goes now
                return
        del self._waiting[key]
