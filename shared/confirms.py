"""Confirmed publishing on a connection of its own: AMQP 0-9-1, one channel in confirm mode.

Why not aio-pika's channel: profiled under the gateway's load, a confirm's way back through
aiormq (a frame-reader task, a queue, a channel task, one callback per tag of a multiple ack, a
future store) cost about as much CPU as all the rest of a webhook. Here the broker's bytes are
read where they arrive (``data_received``): an ack resolves its publishes' futures at once, with
no task in between. RabbitMQ also advises separate connections for publishing and consuming:
when it blocks a publisher (a memory or disk alarm), the consumers' acks still flow.

It only publishes: PLAIN login, tune, ``Confirm.Select`` on channel 1, then persistent
``mandatory`` publishes, each answered by the broker's ack, nack or return (matched by message
id: the bus keeps one publish per id in flight, ``shared.publishing.SameIdTurns``), heartbeats
both ways, and the broker's close or block. It does not reconnect: :class:`PublishLink` does.
Topology and consuming stay on aio-pika (``shared.bus``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import pamqp.frame
from pamqp import commands as spec
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader, ProtocolHeader
from pamqp.heartbeat import Heartbeat
from yarl import URL

from shared.logs import fields

log = logging.getLogger("mensajero.bus")

CHANNEL = 1
HANDSHAKE_SECONDS = 10.0
CLOSE_SECONDS = 2.0
DEFAULT_HEARTBEAT = 60  # seconds, as aio-pika's default (``?heartbeat=`` in the URL)
MISSED_HEARTBEATS = 3  # silent for this many intervals: the connection is dead
WRITE_BUFFER_BYTES = 4 * 1024 * 1024  # unsent past this: publishing is held (Held)
_FRAME_END = b"\xce"
_HEARTBEAT = pamqp.frame.marshal(Heartbeat(), 0)
_ACK = struct.pack(">HH", 60, 80)  # Basic.Ack: class 60, method 80 (read without pamqp)
_METHOD_FRAME, _HEADER_FRAME, _BODY_FRAME, _HEARTBEAT_FRAME = 1, 2, 3, 8
F = TypeVar("F", bound=Frame)


class Refused(Exception):
    """The broker took the message but refused it: returned or nacked."""


class Returned(Refused):
    """Unroutable: no queue is bound for its routing key (``mandatory``)."""


class Nacked(Refused):
    """The broker could not store it (a queue's limit, an internal error)."""


class LinkDown(ConnectionError):
    """The publishing connection is not open (lost, closed, not yet restored)."""


class Held(LinkDown):
    """Open, but not taking publishes now: RabbitMQ blocks it (a memory or disk alarm), or the
    socket's send buffer is full. Refused at once rather than piled up in memory; the bus waits
    for it to lift (``writable``) within each publish's deadline."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, read from an ``amqp://`` or ``amqps://`` URL as aio-pika
    reads it (vhost in the path, ``heartbeat``, ``name`` and the TLS options in the query)."""

    host: str
    port: int
    user: str
    password: str
    vhost: str
    heartbeat: int
    name: str | None
    tls: ssl.SSLContext | None

    @classmethod
    def parse(cls, url: str, name: str | None = None) -> Endpoint:
        parsed = URL(url)
        secure = parsed.scheme == "amqps"
        query = parsed.query
        try:
            heartbeat = int(query.get("heartbeat", DEFAULT_HEARTBEAT))
        except ValueError:
            heartbeat = DEFAULT_HEARTBEAT
        return cls(
            host=parsed.host or "localhost",
            port=parsed.port or (5671 if secure else 5672),
            user=parsed.user or "guest",
            password=parsed.password or "guest",
            vhost=parsed.path[1:].replace("%2F", "/") or "/",  # as aiormq reads it
            heartbeat=heartbeat if 0 <= heartbeat < 65535 else 0,
            name=name or query.get("name"),
            tls=_tls(query) if secure else None,
        )


def _tls(query: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=query.get("cafile"), capath=query.get("capath"))
    if query.get("certfile"):
        context.load_cert_chain(query["certfile"], query.get("keyfile"))
    if query.get("no_verify_ssl", "0") != "0":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class PublishConnection(asyncio.Protocol):
    """One connection, its channel 1 in confirm mode. Open it with :meth:`open`."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._replies: collections.deque[Frame] = collections.deque()
        self._reply_waiter: asyncio.Future[None] | None = None
        # Delivery tag -> (its future, its message id); tags in publishing order beside it.
        self._unconfirmed: dict[int, tuple[asyncio.Future[None], str]] = {}
        self._order: collections.deque[int] = collections.deque()
        self._by_message_id: dict[str, int] = {}
        self._returned: dict[int, Returned] = {}
        self._incoming: _IncomingReturn | None = None
        self._tag = 0
        self._out: list[bytes] = []  # frames written at the end of this loop turn
        self._flush_scheduled = False
        self._publish_frames: dict[tuple[str, str], bytes] = {}
        self.lost: asyncio.Future[str] = self._loop.create_future()  # why, once gone
        self.max_content = 131072 - 8
        self._heartbeat = 0
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._last_received = self._loop.time()
        self.blocked: str | None = None
        self._paused = False  # the transport's buffer is over its high-water mark
        self.writable = asyncio.Event()  # neither blocked nor paused (or gone: then lost)
        self.writable.set()

    # ------------------------------------------------------------------ opening, closing

    @classmethod
    async def open(cls, endpoint: Endpoint) -> PublishConnection:
        """Connected, logged in and in confirm mode; an error naming what failed otherwise."""
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            cls, endpoint.host, endpoint.port, ssl=endpoint.tls
        )
        try:
            async with asyncio.timeout(HANDSHAKE_SECONDS):
                await connection._handshake(endpoint)
        except BaseException:
            connection.abort("handshake failed")
            raise
        return connection

    async def _handshake(self, endpoint: Endpoint) -> None:
        self._write(ProtocolHeader().marshal())
        start = await self._expect(spec.Connection.Start)
        if "PLAIN" not in start.mechanisms.split():
            raise ConnectionError(f"RabbitMQ offers no PLAIN login ({start.mechanisms})")
        self._send(0, spec.Connection.StartOk(
            client_properties=_client_properties(endpoint.name),
            mechanism="PLAIN",
            response=f"\0{endpoint.user}\0{endpoint.password}",
        ))  # fmt: skip
        tune = await self._expect(spec.Connection.Tune)
        frame_max = tune.frame_max or 131072
        self.max_content = frame_max - 8
        self._heartbeat = endpoint.heartbeat  # what the URL asks, as aio-pika does (0: none)
        self._send(0, spec.Connection.TuneOk(tune.channel_max, frame_max, self._heartbeat))
        self._send(0, spec.Connection.Open(virtual_host=endpoint.vhost))
        await self._expect(spec.Connection.OpenOk)
        if self._heartbeat:
            self._heartbeat_timer = self._loop.call_later(self._heartbeat / 2, self._beat)
        self._send(CHANNEL, spec.Channel.Open())
        await self._expect(spec.Channel.OpenOk)
        self._send(CHANNEL, spec.Confirm.Select())
        await self._expect(spec.Confirm.SelectOk)

    async def close(self) -> None:
        """Close politely (the broker's Close-Ok, within ``CLOSE_SECONDS``); publishes still
        unanswered fail with :class:`LinkDown`."""
        if self.lost.done() or self._transport is None:
            return
        self._send(0, spec.Connection.Close(200, "closing", 0, 0))
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.shield(self.lost)
        except TimeoutError:
            self.abort("closing")

    def abort(self, reason: str) -> None:
        self._gone(reason)
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ publishing

    def publish(
        self, exchange: str, routing_key: str, properties: bytes, body: bytes, message_id: str
    ) -> asyncio.Future[None]:
        """The broker's answer to come: None once acked, else :class:`Returned`,
        :class:`Nacked` or :class:`LinkDown`. ``properties``: encoded Basic properties
        (``shared.publishing.message_properties``), ``message_id`` among them. Publishes of one
        turn of the event loop go out in one write."""
        if not self.writable.is_set():
            raise Held(f"RabbitMQ is not taking publishes now: {self._held_by()}")
        if self.lost.done():
            raise LinkDown(f"publishing connection lost: {self.lost.result()}")
        self._tag += 1
        tag = self._tag
        confirmation: asyncio.Future[None] = self._loop.create_future()
        self._unconfirmed[tag] = (confirmation, message_id)
        self._order.append(tag)
        if message_id:
            self._by_message_id[message_id] = tag
        out = self._out
        out += (
            self._publish_frame(exchange, routing_key),
            struct.pack(">BHIHHQ", _HEADER_FRAME, CHANNEL, 12 + len(properties), 60, 0, len(body)),
            properties,
            _FRAME_END,
        )
        size = self.max_content
        for start in range(0, len(body), size):
            chunk = body[start : start + size]
            out += (struct.pack(">BHI", _BODY_FRAME, CHANNEL, len(chunk)), chunk, _FRAME_END)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return confirmation

    @property
    def in_flight(self) -> int:
        return len(self._unconfirmed)

    def _publish_frame(self, exchange: str, routing_key: str) -> bytes:
        frame = self._publish_frames.get((exchange, routing_key))
        if frame is None:
            if len(self._publish_frames) > 1024:  # routing keys are event types: a few
                self._publish_frames.clear()
            method = spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True)
            frame = pamqp.frame.marshal(method, CHANNEL)
            self._publish_frames[(exchange, routing_key)] = frame
        return frame

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._write(data)

    # ------------------------------------------------------------------ the broker's answers

    def _settle(self, tag: int, nacked: bool) -> None:
        entry = self._unconfirmed.pop(tag, None)
        returned = self._returned.pop(tag, None)
        if entry is None:
            return
        confirmation, message_id = entry
        if message_id and self._by_message_id.get(message_id) == tag:
            del self._by_message_id[message_id]
        if confirmation.done():  # its publisher gave up waiting
            return
        if nacked:
            confirmation.set_exception(Nacked("nacked by the broker"))
        elif returned is not None:
            confirmation.set_exception(returned)
        else:
            confirmation.set_result(None)

    def _confirm(self, tag: int, multiple: bool, nacked: bool) -> None:
        order = self._order
        if multiple:
            while order and order[0] <= tag:
                self._settle(order.popleft(), nacked)
            return
        self._settle(tag, nacked)
        while order and order[0] not in self._unconfirmed:
            order.popleft()

    def _on_return(self, method: spec.Basic.Return, header: ContentHeader) -> None:
        message_id = header.properties.message_id or ""
        tag = self._by_message_id.get(message_id)
        if tag is None:
            log.warning("the broker returned a message not in flight", extra=fields(id=message_id))
            return
        self._returned[tag] = Returned(
            f"returned by the broker: {method.reply_code} {method.reply_text} "
            f"({method.exchange or '(default)'} / {method.routing_key})"
        )

    # ------------------------------------------------------------------ the protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # Room for a 1,000-update webhook's turn (about 1 MB) before publishing is held.
        self._transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)

    def pause_writing(self) -> None:
        self._paused = True
        self._held()

    def resume_writing(self) -> None:
        self._paused = False
        self._held()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone(f"{exc}" if exc else "closed by the broker")

    def data_received(self, data: bytes) -> None:
        self._last_received = self._loop.time()
        buffer = self._buffer
        buffer += data
        at = 0
        end = len(buffer)
        while end - at >= 8:
            kind, channel, size = struct.unpack_from(">BHI", buffer, at)
            if end - at < size + 8:
                break
            if buffer[at + 7 + size] != 0xCE:
                self.abort(f"malformed frame from the broker (type {kind})")
                return
            start = at + 7
            if kind == _METHOD_FRAME and size == 13 and buffer[start : start + 4] == _ACK:
                tag, bits = struct.unpack_from(">QB", buffer, start + 4)
                self._confirm(tag, bool(bits & 1), nacked=False)
            else:
                self._frame(kind, channel, bytes(buffer[at : start + size + 1]))
            at = start + size + 1
        del buffer[:at]

    def _frame(self, kind: int, channel: int, raw: bytes) -> None:
        if kind == _HEARTBEAT_FRAME:
            return
        try:
            _, _, frame = pamqp.frame.unmarshal(raw)
        except Exception as error:  # pamqp names what it could not read
            self.abort(f"unreadable frame from the broker: {error}")
            return
        if isinstance(frame, ContentHeader | ContentBody):  # a returned message's content
            if self._incoming is not None:
                self._incoming = self._incoming.take(frame, self._on_return)
        elif isinstance(frame, spec.Basic.Nack):
            self._confirm(frame.delivery_tag, frame.multiple, nacked=True)
        elif isinstance(frame, spec.Basic.Return):
            self._incoming = _IncomingReturn(frame)
        elif isinstance(frame, spec.Basic.Ack):
            self._confirm(frame.delivery_tag, frame.multiple, nacked=False)
        elif isinstance(frame, Frame):
            self._control(channel, frame)

    def _control(self, channel: int, frame: Frame) -> None:
        """Everything but confirms: the broker closing or blocking us, handshake replies."""
        if isinstance(frame, spec.Connection.Close | spec.Channel.Close):
            reason = f"{frame.reply_code} {frame.reply_text}"
            reply = spec.Connection.CloseOk() if channel == 0 else spec.Channel.CloseOk()
            self._send(channel, reply)
            log.warning("RabbitMQ closed the publishing connection: %s", reason)
            self._replies.append(frame)  # a handshake step raises it
            self._gone(reason)  # a closed channel is one we cannot publish on: start over
            if self._transport is not None:
                self._transport.close()  # once the Close-Ok is written
        elif isinstance(frame, spec.Connection.CloseOk):
            self.abort("closed")
        elif isinstance(frame, spec.Connection.Blocked):
            self.blocked = frame.reason or "blocked"
            log.warning("RabbitMQ blocked publishing: %s", self.blocked)
            self._held()
        elif isinstance(frame, spec.Connection.Unblocked):
            self.blocked = None
            log.info("RabbitMQ unblocked publishing")
            self._held()
        elif isinstance(frame, spec.Channel.Flow):
            self._send(channel, spec.Channel.FlowOk(frame.active))
        else:
            self._replies.append(frame)
            self._wake()

    def _gone(self, reason: str) -> None:
        """Fail what waits: every unanswered publish (its outcome unknown: the bus retries it),
        and a handshake step."""
        if self.lost.done():
            return
        self.lost.set_result(reason)
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        pending, self._unconfirmed = self._unconfirmed, {}
        self._order.clear()
        self._by_message_id.clear()
        self._returned.clear()
        for confirmation, _ in pending.values():
            if not confirmation.done():
                confirmation.set_exception(LinkDown(f"publishing connection lost: {reason}"))
        self.writable.set()  # who waits for it sees the loss instead
        self._wake()

    def _held(self) -> None:
        if self.lost.done() or (self.blocked is None and not self._paused):
            self.writable.set()
        else:
            self.writable.clear()

    def _held_by(self) -> str:
        return f"blocked ({self.blocked})" if self.blocked else "its send buffer is full"

    def _beat(self) -> None:
        silent = self._loop.time() - self._last_received
        if silent > self._heartbeat * MISSED_HEARTBEATS:
            log.warning("RabbitMQ silent for %.0f s: publishing connection dropped", silent)
            self.abort(f"no heartbeat from the broker for {silent:.0f} s")
            return
        self._write(_HEARTBEAT)
        self._heartbeat_timer = self._loop.call_later(self._heartbeat / 2, self._beat)

    # ------------------------------------------------------------------ helpers

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _send(self, channel: int, method: Frame) -> None:
        self._write(pamqp.frame.marshal(method, channel))

    def _wake(self) -> None:
        if self._reply_waiter is not None and not self._reply_waiter.done():
            self._reply_waiter.set_result(None)

    async def _expect(self, kind: type[F]) -> F:
        while not self._replies:
            if self.lost.done():
                raise ConnectionError(f"RabbitMQ closed the connection: {self.lost.result()}")
            self._reply_waiter = self._loop.create_future()
            await self._reply_waiter
        frame = self._replies.popleft()
        if isinstance(frame, spec.Connection.Close | spec.Channel.Close):
            raise ConnectionError(f"RabbitMQ refused: {frame.reply_code} {frame.reply_text}")
        if not isinstance(frame, kind):
            raise ConnectionError(f"RabbitMQ answered {frame.name}, expected {kind.name}")
        return frame


class _IncomingReturn:
    """A returned message's frames as they arrive: its method, content header, body frames."""

    def __init__(self, method: spec.Basic.Return) -> None:
        self.method = method
        self.header: ContentHeader | None = None
        self.remaining = 0

    def take(
        self,
        frame: ContentHeader | ContentBody,
        done: Callable[[spec.Basic.Return, ContentHeader], None],
    ) -> _IncomingReturn | None:
        """The state after ``frame`` (None: complete, ``done(method, header)`` called)."""
        if isinstance(frame, ContentHeader):
            self.header, self.remaining = frame, frame.body_size
        elif self.header is None:
            return None  # a body before its header: not what the protocol sends
        else:
            self.remaining -= len(frame.value)
        if self.remaining > 0:
            return self
        done(self.method, self.header)
        return None


def _client_properties(name: str | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "product": "mensajero",
        "platform": "Python asyncio",
        "capabilities": {
            "authentication_failure_close": True,
            "basic.nack": True,
            "connection.blocked": True,
            "publisher_confirms": True,
        },
    }
    if name:
        properties["connection_name"] = name
    return properties
