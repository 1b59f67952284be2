"""Publishing's parts the bus puts together: the message properties as bytes, the reconnecting
publishing connection (:class:`PublishLink` over :mod:`shared.confirms`), the wait for a
confirm by a deadline, and one publish per message id at a time (a return is matched by it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
import time
from typing import Any

import pamqp.encode

from shared.confirms import Endpoint, LinkDown, PublishConnection
from shared.logs import describe

log = logging.getLogger("mensajero.bus")

_PERSISTENT_JSON = b"\x10application/json"  # content_type, as a shortstr
_PERSISTENT = b"\x02"  # delivery_mode
_NO_HEADERS = b"\x00\x00\x00\x00"  # an empty table
_SIZE = struct.Struct(">I")
# Property flags (AMQP 0-9-1, 4.2.6.1), in wire order.
_CONTENT_TYPE, _HEADERS, _DELIVERY_MODE = 0x8000, 0x2000, 0x1000
_CORRELATION_ID, _MESSAGE_ID, _TYPE = 0x0400, 0x0080, 0x0020


# A short string's length byte, for each length.
_LENGTHS = [bytes((n,)) for n in range(256)]


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {value[:40]!r}...")
    return _LENGTHS[len(raw)] + raw


# Message types are event types, a few dozen: each one's short string made once.
_TYPES: dict[str, bytes] = {}


def _type_shortstr(message_type: str) -> bytes:
    encoded = _TYPES.get(message_type)
    if encoded is None:
        encoded = _shortstr(message_type)
        if len(_TYPES) < 1024:
            _TYPES[message_type] = encoded
    return encoded


def message_properties(
    message_id: str, message_type: str, correlation_id: str | None, headers: dict[str, Any]
) -> bytes:
    """The Basic properties of a persistent JSON message, encoded (flags, then values) as pamqp
    encodes them (tests/shared/test_publishing.py): pamqp's generic encoder cost more than the
    rest of a publish's framing. An empty string is left out, as pamqp leaves it."""
    if correlation_id and message_id and message_type:  # an event's publish: all of them
        return b"".join((
            _ALL_FLAGS_JSON,
            _table(headers) if headers else _NO_HEADERS,
            _PERSISTENT,
            _shortstr(correlation_id),
            _shortstr(message_id),
            _type_shortstr(message_type),
        ))  # fmt: skip
    flags = _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE
    parts = [b"", _PERSISTENT_JSON, _table(headers) if headers else _NO_HEADERS, _PERSISTENT]
    if correlation_id:
        flags |= _CORRELATION_ID
        parts.append(_shortstr(correlation_id))
    if message_id:
        flags |= _MESSAGE_ID
        parts.append(_shortstr(message_id))
    if message_type:
        flags |= _TYPE
        parts.append(_type_shortstr(message_type))
    parts[0] = _FLAGS[flags]
    return b"".join(parts)


# The property flags' two bytes, for each combination of the optional ones.
_FLAGS = {
    flags: struct.pack(">H", flags)
    for flags in (
        _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE | optional
        for optional in range(0, 0x0800)
        if optional & ~(_CORRELATION_ID | _MESSAGE_ID | _TYPE) == 0
    )
}
_ALL_FLAGS_JSON = (
    _FLAGS[_CONTENT_TYPE | _HEADERS | _DELIVERY_MODE | _CORRELATION_ID | _MESSAGE_ID | _TYPE]
    + _PERSISTENT_JSON
)


def _table(headers: dict[str, Any]) -> bytes:
    """A field table as pamqp encodes it; text values (every publish's partition key) written
    here, in pamqp's order (sorted keys), since pamqp's generic encoder costs a few
    microseconds per publish. Anything else, or a key pamqp would truncate, goes to pamqp."""
    if len(headers) == 1:  # the partition key alone: most publishes
        ((key, value),) = headers.items()
        if type(key) is str and type(value) is str and len(key) <= 128 and key.isascii():
            text = value.encode()
            return b"".join((
                _SIZE.pack(1 + len(key) + 5 + len(text)),
                _LENGTHS[len(key)],
                key.encode(),
                b"S",
                _SIZE.pack(len(text)),
                text,
            ))  # fmt: skip
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


RECONNECT_FIRST_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 5.0


class PublishLink:
    """The bus's publishing connection (:mod:`shared.confirms`), opened again whenever it is
    lost: at once, then after 0.2 s, doubling up to 5 s. Publishes asked for while it is away
    raise :class:`LinkDown`; the bus retries them within their deadline."""

    def __init__(self, url: str, name: str | None) -> None:
        self.endpoint = Endpoint.parse(url, name)
        self._connection: PublishConnection | None = None
        self._up = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        self._connection = await PublishConnection.open(self.endpoint)
        self._up.set()
        self._keeper = asyncio.get_running_loop().create_task(self._keep())

    def publish(
        self, exchange: str, routing_key: str, properties: bytes, body: bytes, message_id: str
    ) -> asyncio.Future[None]:
        """See :meth:`PublishConnection.publish`; :class:`LinkDown` while reconnecting."""
        connection = self._connection
        if connection is None or connection.lost.done():
            raise LinkDown("publishing connection is being restored")
        return connection.publish(exchange, routing_key, properties, body, message_id)

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.lost.done()

    @property
    def ready(self) -> bool:
        """Connected and taking publishes (not blocked, its send buffer not full)."""
        return (
            self.connected and self._connection is not None and self._connection.writable.is_set()
        )

    async def wait_ready(self, timeout: float) -> bool:
        """True once connected and taking publishes (:attr:`ready`), within ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.ready:
                    connection = self._connection
                    if connection is not None and not connection.lost.done():
                        await connection.writable.wait()  # set again once lifted, or lost
                    else:
                        self._up.clear()  # it may still be set, the loss just noticed
                        await self._up.wait()
        return self.ready

    async def _keep(self) -> None:
        while not self._closing and self._connection is not None:
            # Shielded: close() cancels this task, and a cancelled ``lost`` would make the
            # connection skip its polite close (the broker logs "unexpectedly closed").
            reason = await asyncio.shield(self._connection.lost)
            self._up.clear()
            if self._closing:
                return
            log.warning("publishing connection lost (%s): reconnecting", reason)
            self._connection = await self._reopen()
            log.info("publishing connection restored")
            self._up.set()

    async def _reopen(self) -> PublishConnection:
        delay = 0.0
        while True:
            try:
                return await PublishConnection.open(self.endpoint)
            except Exception as error:  # the broker is away: try again, more slowly
                delay = min(max(delay * 2, RECONNECT_FIRST_SECONDS), RECONNECT_MAX_SECONDS)
                log.warning(
                    "publishing connection not restored: %s; next try in %.1f s",
                    describe(error),
                    delay,
                )
                await asyncio.sleep(delay)  # a backoff, not a wait for anything

    async def close(self) -> None:
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._up.clear()


# --- waiting for the broker, and one publish per message id at a time (used by shared.bus)


class Expired(Exception):
    """A publish's deadline passed before the broker answered it."""


# How often the confirmations past their deadline are looked for: one may be given up that much
# after its deadline, never before.
DEADLINE_TICK_SECONDS = 0.025


class Deadlines:
    """The broker's answers awaited, each until its deadline (monotonic): past it, the
    confirmation is cancelled (the connection ignores a late ack).

    One timer for all of them, ticking while any waits, instead of a timer per publish: on
    uvloop a timer set and cancelled costs about a tenth of a confirmed publish."""

    def __init__(self) -> None:
        self._waiting: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, confirmation: asyncio.Future[Any], deadline: float) -> None:
        """Cancel ``confirmation`` once ``deadline`` passed, if still unanswered: its waiter
        then tells this from a cancellation of its own with :func:`expired`."""
        if confirmation.done():
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a bus used again in another loop: the old one's are gone
            self._loop, self._timer = loop, None
            self._waiting.clear()
        self._waiting.append((deadline, confirmation))
        if self._timer is None:
            self._timer = loop.call_later(DEADLINE_TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        waiting: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        for deadline, confirmation in self._waiting:
            if confirmation.done():
                continue
            if deadline <= now:
                confirmation.cancel()
            else:
                waiting.append((deadline, confirmation))
        self._waiting = waiting
        self._timer = (
            asyncio.get_running_loop().call_later(DEADLINE_TICK_SECONDS, self._tick)
            if waiting
            else None
        )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def expired(confirmation: asyncio.Future[Any], deadline: float) -> bool:
    """Whether the CancelledError its waiter got means ``confirmation`` was given up at its
    deadline (:class:`Deadlines`), not that the waiting task itself is being cancelled."""
    task = asyncio.current_task()
    return (
        confirmation.cancelled()
        and time.monotonic() >= deadline
        and (task is None or task.cancelling() == 0)
    )


def loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


class SameIdTurns:
    """Publishes of one message id, one after another (a queue of waiters per id in flight)."""

    def __init__(self) -> None:
        # None until a second publish of the id waits (most never have one).
        self._waiting: dict[str, collections.deque[asyncio.Future[None]] | None] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._waiting

    def enter(self, key: str) -> None:
        self._waiting[key] = None

    async def wait_turn(self, key: str, deadline: float) -> None:
        """Wait until the publishes ahead with ``key`` are done; the turn is then ours."""
        turn = asyncio.get_running_loop().create_future()
        waiting = self._waiting[key]
        if waiting is None:
            waiting = self._waiting[key] = collections.deque()
        waiting.append(turn)
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
            self._waiting.pop(key, None)  # nobody waits after it
            return
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the next publish of this id goes now
                return
        del self._waiting[key]
