"""Meta's webhooks served in front of aiohttp: the plain ones read and answered here, anything
else handed to aiohttp, connection and all.

aiohttp's request, payload, response and writer objects, and its task per request, cost about
80 us of CPU per request: a third of a confirmed webhook. Meta's webhooks are all alike: POST
/webhook/whatsapp, HTTP/1.1, a Content-Length body. A connection starts in the lane
(:class:`LaneProtocol`): while its requests have exactly that shape, each is read here and
answered by the same use case as aiohttp's route (``gateway.handlers.receive_whatsapp``), with
the same answers, metrics and log lines. The first request that does not (another method or
path, a query, HTTP/1.0, chunked, a Content-Encoding, Expect, an upgrade, a header this strict
reader does not accept, a head or a body over the limits) is handed to aiohttp with every byte
read so far, and the connection is aiohttp's from then on: what is unusual or hostile gets
aiohttp's answer, as before.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

from aiohttp import web, web_server
from aiohttp.http import SERVER_SOFTWARE

from gateway.handlers import Answer, Deps, hot
from gateway.http import unforeseen

REQUEST_LINE = b"POST /webhook/whatsapp HTTP/1.1"
# A longer head goes to aiohttp (its limit is 8190 bytes a line); Meta's are well under 1 KiB.
MAX_HEAD_BYTES = 8192
# An idle connection is closed after this, as aiohttp's keep-alive timeout does.
KEEPALIVE_SECONDS = 75.0
# The header lines after the request line, each a token (RFC 9110) for the name and visible
# ASCII, spaces and tabs for the value: checked at once, in C.
_HEADER_LINES = re.compile(rb"(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\x20-\x7e\t]*)*")
# The headers the lane reads, or that make a request not plain (aiohttp handles those).
_READ = re.compile(
    rb"\r\n(content-length|x-hub-signature-256|connection"
    rb"|transfer-encoding|content-encoding|expect|upgrade|trailer|te):[ \t]*([^\r]*)",
    re.IGNORECASE,
)
_BARE_LF = re.compile(rb"(?<!\r)\n")
_SERVER = SERVER_SOFTWARE.encode()  # the Server header aiohttp sends


# A whole webhook body and its X-Hub-Signature-256 -> the answer (gateway.app's use case).
Receive = Callable[[bytes, str | None], Awaitable[Answer]]


@dataclass(frozen=True)
class Head:
    """A plain webhook request's head, as the lane needs it."""

    length: int
    signature: str | None
    close: bool  # ``Connection: close``


def read_head(head: bytes, max_body: int) -> Head | None:
    """The head (without its blank line) of a plain webhook request; None: hand it over."""
    if not head.startswith(REQUEST_LINE) or not _HEADER_LINES.fullmatch(head, len(REQUEST_LINE)):
        return None
    length: int | None = None
    signature: str | None = None
    close = False
    for match in _READ.finditer(head):
        name, value = match[1].lower(), match[2].rstrip(b" \t")
        if name == b"content-length":
            if length is not None or not value.isdigit() or len(value) > 18:
                return None
            length = int(value)
        elif name == b"x-hub-signature-256":
            if signature is not None:
                return None
            signature = value.decode("ascii")
        elif name == b"connection":
            token = value.lower()
            if token == b"close":
                close = True
            elif token != b"keep-alive":
                return None
        else:  # a header that makes the request not plain
            return None
    if length is None or length > max_body:
        return None
    return Head(length, signature, close)


class _Date:
    """The Date header's value, made once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return f"HTTP/1.1 {status} {reason}\r\n".encode()


_STATUS_LINES = {status: _status_line(status) for status in (200, 400, 401, 413, 503)}


class WebhookLane:
    """The lane of one gateway process: its connections, what answers a request, and
    aiohttp's server (set once the runner is up) for whatever the lane hands over."""

    def __init__(self, deps: Deps, grace: float, receive: Receive) -> None:
        self.deps = deps
        self.grace = grace
        self.receive = receive
        self.max_body = deps.config.webhook_max_bytes
        self.aiohttp: web_server.Server | None = None
        self.connections: set[LaneProtocol] = set()
        self.date = _Date()
        self.draining = False

    def __call__(self) -> asyncio.Protocol:
        """A new connection's protocol (``loop.create_server``'s factory)."""
        return LaneProtocol(self)

    def site(self, runner: web.BaseRunner, host: str, port: int, reuse_port: bool) -> LaneSite:
        """The site serving ``runner``'s application through this lane."""
        return LaneSite(runner, self, host, port, reuse_port=reuse_port)

    def response(self, answer: Answer, close: bool) -> bytes:
        text = answer.text.encode()
        status = _STATUS_LINES.get(answer.status) or _status_line(answer.status)
        return b"".join(
            (
                status,
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ",
                str(len(text)).encode(),
                b"\r\nDate: ",
                self.date.now(),
                b"\r\nServer: ",
                _SERVER,
                b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n",
                text,
            )
        )

    async def drain(self, _app: web.Application) -> None:
        """On shutdown (before the broker closes): idle connections closed, requests under way
        answered within the grace, then every connection closed."""
        self.draining = True
        serving = [c.serving for c in self.connections if c.serving is not None]
        for connection in list(self.connections):
            if connection.serving is None:
                connection.close()
        if serving:
            await asyncio.wait(serving, timeout=self.grace)
        for connection in list(self.connections):
            connection.close()


class LaneProtocol(asyncio.Protocol):
    """One connection while its requests are plain webhooks (see the module's docstring)."""

    def __init__(self, lane: WebhookLane) -> None:
        self.lane = lane
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: Head | None = None
        self.body_at = 0  # where the parsed head's body starts in the buffer
        self.serving: asyncio.Task[None] | None = None
        self.eof = False
        self.paused = False
        self.idle: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ the transport's calls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.lane.connections.add(self)
        self._idle_timer()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.serving is None:
            self._next()
            if self.serving is None and self.buffer:  # (empty once handed over)
                self._idle_timer()  # a request still arriving: idle from its last bytes
        elif len(self.buffer) > self.lane.max_body + MAX_HEAD_BYTES and not self.paused:
            self.paused = True  # a client pipelining faster than it is answered
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        if self.serving is None:
            self._next()
        return True  # half-closed: what was asked is still answered

    def connection_lost(self, exc: Exception | None) -> None:
        # A request under way still finishes (its events confirmed); only its answer is lost,
        # as with aiohttp, and Meta retries it.
        self.lane.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # ------------------------------------------------------------------ requests

    def _next(self) -> None:
        """Start the buffered request when it is whole; hand over what is not plain."""
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES or _BARE_LF.search(self.buffer):
                    self._hand_over()
                elif self.eof or (self.lane.draining and not self.buffer):
                    self.close()
                return
            self.head = read_head(bytes(self.buffer[:end]), self.lane.max_body)
            if self.head is None:
                self._hand_over()
                return
            self.body_at = end + 4
        end = self.body_at + self.head.length
        if len(self.buffer) < end:
            if self.eof:
                self._hand_over()  # a truncated body: aiohttp answers it
            return
        body = bytes(self.buffer[self.body_at : end])
        del self.buffer[:end]
        head, self.head = self.head, None
        if self.idle is not None:
            self.idle.cancel()
        self.serving = asyncio.get_running_loop().create_task(self._serve(head, body))

    async def _serve(self, head: Head, body: bytes) -> None:
        lane = self.lane
        started = time.monotonic()
        hot.info("=== WEBHOOK WHATSAPP RECIBIDO ===")
        try:
            answer = await lane.receive(body, head.signature)
        except Exception:  # as gateway.http.guarded does for aiohttp's routes
            answer = unforeseen(lane.deps.metrics, "POST", "/webhook/whatsapp")
        else:
            lane.deps.metrics.request("whatsapp", answer.outcome, time.monotonic() - started)
        self.serving = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the client left: the answer is lost, as with aiohttp (Meta retries)
        close = head.close or lane.draining
        transport.write(lane.response(answer, close))
        if close:
            transport.close()
            return
        if self.paused:
            self.paused = False
            transport.resume_reading()
        self._idle_timer()
        self._next()

    def _idle_timer(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(KEEPALIVE_SECONDS, self._idle_out)

    def _idle_out(self) -> None:
        if self.serving is None:
            self.close()

    def _hand_over(self) -> None:
        """The connection to aiohttp, with what it has sent so far."""
        transport = self.transport
        server = self.lane.aiohttp
        self.lane.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        if transport is None or transport.is_closing():
            return
        if server is None:  # not serving yet (never so once the site is up)
            transport.close()
            return
        self.lane.deps.metrics.handed_over.inc()
        handler = server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.paused:
            transport.resume_reading()
        if self.buffer:
            handler.data_received(bytes(self.buffer))
        self.buffer.clear()
        if self.eof and not cast(asyncio.Protocol, handler).eof_received():
            transport.close()  # what the transport does when eof_received says so


class LaneSite(web.BaseSite):
    """A TCP site whose connections start in the lane (``shared.service.run`` and the tests'
    ``running`` serve the gateway through it)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        lane: WebhookLane,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._lane = lane
        lane.aiohttp = runner.server
        self._host = host
        self._port = port
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._lane,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
