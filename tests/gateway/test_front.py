"""The webhook lane in front of aiohttp (gateway.front): plain webhooks answered as aiohttp's
route answers them, everything else handed to aiohttp on the same connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest

from gateway import front
from gateway.app import create_app
from gateway.bootstrap import Adapters
from gateway.front import Head, read_head
from gateway.publisher import Outgoing
from gateway.settings import Settings
from shared.bus import Bus
from shared.events import InboundMessage
from tests.gateway.conftest import Collector
from tests.gateway.payloads import contact, dumps, message, sign, value, webhook
from tests.services import running

LIMIT = 3 * 1024 * 1024
PLAIN = b"POST /webhook/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"


def _head(*headers: bytes, line: bytes = b"POST /webhook/whatsapp HTTP/1.1") -> bytes:
    return b"\r\n".join((line, b"Host: x", *headers))


def test_a_plain_head_is_read() -> None:
    head = _head(b"Content-Length: 12", b"X-Hub-Signature-256:  sha256=ab  ", b"User-Agent: a b")
    assert read_head(head, LIMIT) == Head(12, "sha256=ab", close=False)
    closing = _head(b"content-length: 0", b"Connection: Close")
    assert read_head(closing, LIMIT) == Head(0, None, close=True)


@pytest.mark.parametrize(
    "head",
    [
        _head(b"Content-Length: 2", line=b"GET /webhook/whatsapp HTTP/1.1"),
        _head(b"Content-Length: 2", line=b"POST /webhook/whatsapp?hub.mode=x HTTP/1.1"),
        _head(b"Content-Length: 2", line=b"POST /webhook/whatsapp HTTP/1.0"),
        _head(b"Content-Length: 2", line=b"POST /webhook/ses HTTP/1.1"),
        _head(b"Content-Length: 2", line=b"post /webhook/whatsapp HTTP/1.1"),
        _head(b"Transfer-Encoding: chunked"),
        _head(b"Content-Length: 2", b"Transfer-Encoding: chunked"),
        _head(b"Content-Length: 2", b"Content-Encoding: gzip"),
        _head(b"Content-Length: 2", b"Expect: 100-continue"),
        _head(b"Content-Length: 2", b"Upgrade: h2c", b"Connection: Upgrade"),
        _head(b"Content-Length: 2", b"Content-Length: 2"),
        _head(b"Content-Length: +2"),
        _head(b"Content-Length: 2, 2"),
        _head(b"Content-Length: 99999999999999999999"),
        _head(f"Content-Length: {LIMIT + 1}".encode()),
        _head(),  # no length
        _head(b"Content-Length: 2", b"X-Hub-Signature-256: a", b"X-Hub-Signature-256: b"),
        _head(b"Content-Length: 2", b"X-Name: caf\xc3\xa9"),
        _head(b"Content-Length: 2", b"X-Folded: a", b" b"),
        _head(b"Content-Length: 2", b"Bad Name: a"),
        _head(b"Content-Length: 2", b"X-Nul: a\x00b"),
        _head(b"Content-Length: 2", b"NoColon"),
    ],
)
def test_what_is_not_plain_is_handed_over(head: bytes) -> None:
    assert read_head(head, LIMIT) is None


# --------------------------------------------------------------------------- on a connection


class Connection:
    """A raw HTTP/1.1 connection to the gateway."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, content = line.partition(":")
                headers[name.strip().lower()] = content.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 10) == b""


async def handed_over(gateway: str) -> float:
    """The gateway's count of connections handed to aiohttp (read on a connection of its own,
    which the lane hands over too: the count includes that read)."""
    async with aiohttp.ClientSession() as http, http.get(gateway + "/metrics") as response:
        text = await response.text()
    (line,) = [
        x for x in text.splitlines() if x.startswith("gateway_connections_handed_over_total")
    ]
    return float(line.split()[-1])


@pytest.fixture
async def connection(gateway: str) -> AsyncIterator[Connection]:
    host, port = gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    yield Connection(reader, writer)
    writer.close()


def _body(wamid: str) -> bytes:
    text = message(wamid, "text", {"body": "Hola"})
    return dumps(webhook(value(contacts=[contact()], messages=[text])))


def _request(body: bytes, *headers: bytes, signature: str | None = "auto") -> bytes:
    signed = [] if signature is None else [sign(body) if signature == "auto" else signature]
    lines = [
        b"POST /webhook/whatsapp HTTP/1.1",
        b"Host: x",
        b"Content-Type: application/json",
        *(b"X-Hub-Signature-256: " + s.encode() for s in signed),
        b"Content-Length: " + str(len(body)).encode(),
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _wamids(collector: Collector) -> list[str]:
    return [e.wamid for e in collector.events if isinstance(e, InboundMessage)]


async def test_pipelined_webhooks_are_answered_in_order_on_one_connection(
    gateway: str, connection: Connection, collector: Collector
) -> None:
    before = await handed_over(gateway)
    wamids = [f"wamid.lane.{uuid.uuid4().hex}" for _ in range(5)]
    await connection.send(b"".join(_request(_body(w)) for w in wamids))
    for _ in wamids:
        status, headers, body = await connection.answer()
        assert (status, body) == (200, b"ok")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert headers["server"].startswith("Python/") and "date" in headers
        assert "connection" not in headers  # kept alive
    await collector.wait(5)
    assert _wamids(collector) == wamids
    assert await handed_over(gateway) == before + 1  # the metrics read alone: the lane served


async def test_a_request_sent_a_byte_at_a_time_is_answered(
    connection: Connection, collector: Collector
) -> None:
    wamid = f"wamid.lane.{uuid.uuid4().hex}"
    for byte in _request(_body(wamid)):
        await connection.send(bytes((byte,)))
    status, _, body = await connection.answer()
    assert (status, body) == (200, b"ok")
    await collector.wait(1)
    assert _wamids(collector) == [wamid]


@pytest.mark.parametrize(
    "case",
    ["valid", "wrong signature", "no signature", "not json", "not whatsapp"],
)
async def test_the_lane_answers_as_aiohttps_route(connection: Connection, case: str) -> None:
    """The same request through the lane, then with a query (which the lane hands to aiohttp's
    route, on the same connection): the same status and text."""
    body = _body(f"wamid.lane.{uuid.uuid4().hex}")
    if case == "not json":
        body = b"{not json"
    elif case == "not whatsapp":
        body = b'{"object": "page"}'
    signature = {"wrong signature": "sha256=" + "0" * 64, "no signature": None}.get(case, "auto")
    request = _request(body, signature=signature)
    await connection.send(request)
    lane = await connection.answer()
    await connection.send(request.replace(b"/whatsapp", b"/whatsapp?via=aiohttp", 1))
    route = await connection.answer()
    assert (lane[0], lane[2]) == (route[0], route[2])
    assert lane[1]["content-type"] == route[1]["content-type"]
    expected = {"valid": 200, "wrong signature": 401, "no signature": 401, "not json": 400}
    assert lane[0] == expected.get(case, 200)


async def test_after_a_request_handed_over_the_connection_is_aiohttps(
    gateway: str, connection: Connection, collector: Collector
) -> None:
    before = await handed_over(gateway)
    first, second, third = (f"wamid.lane.{uuid.uuid4().hex}" for _ in range(3))
    chunked_body = _body(second)
    chunked = (
        b"POST /webhook/whatsapp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"X-Hub-Signature-256: " + sign(chunked_body).encode() + b"\r\n\r\n"
        + f"{len(chunked_body):x}".encode() + b"\r\n" + chunked_body + b"\r\n0\r\n\r\n"
    )  # fmt: skip
    await connection.send(_request(_body(first)) + chunked + _request(_body(third)))
    for _ in range(3):
        status, _, body = await connection.answer()
        assert (status, body) == (200, b"ok")
    await collector.wait(3)
    assert _wamids(collector) == [first, second, third]
    assert await handed_over(gateway) == before + 2  # this connection, and the metrics read


async def test_connection_close_is_answered_then_closed(connection: Connection) -> None:
    await connection.send(_request(_body(f"wamid.lane.{uuid.uuid4().hex}"), b"Connection: close"))
    status, headers, _ = await connection.answer()
    assert (status, headers["connection"]) == (200, "close")
    assert await connection.closed()


async def test_a_body_over_the_limit_gets_aiohttps_413(connection: Connection) -> None:
    await connection.send(
        PLAIN + f"\r\nContent-Length: {LIMIT + 1}\r\nX-Hub-Signature-256: x\r\n\r\n".encode()
    )
    status, _, body = await connection.answer()
    assert status == 413 and body.startswith(b"body over")


async def test_bare_line_feeds_are_aiohttps_to_answer(connection: Connection) -> None:
    await connection.send(b"POST /webhook/whatsapp HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}")
    status, _, _ = await connection.answer()
    assert status == 400


async def test_an_idle_connection_is_closed(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(front, "KEEPALIVE_SECONDS", 0.05)
    await connection.send(_request(_body(f"wamid.lane.{uuid.uuid4().hex}")))
    assert (await connection.answer())[0] == 200
    assert await connection.closed()  # within the (shortened) keep-alive timeout


class HeldPublisher:
    """Confirms nothing until released (a broker that is slow to confirm)."""

    def __init__(self, *_args: object) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(self, items: Sequence[Outgoing]) -> None:
        self.started.set()
        await self.release.wait()


async def test_at_shutdown_a_webhook_under_way_is_answered_and_idle_ones_closed(
    settings: Settings, bus: Bus
) -> None:
    """(``bus``: its teardown removes the queues this gateway declares on the prefix.)"""
    publishers: list[HeldPublisher] = []

    def held(*args: object) -> HeldPublisher:
        publishers.append(HeldPublisher(*args))
        return publishers[-1]

    app = create_app(settings, Adapters(publisher=held))
    serving = running(app)
    url = await serving.__aenter__()
    host, port = url.removeprefix("http://").split(":")
    busy = Connection(*await asyncio.open_connection(host, int(port)))
    idle = Connection(*await asyncio.open_connection(host, int(port)))
    (publisher,) = publishers
    await busy.send(_request(_body(f"wamid.lane.{uuid.uuid4().hex}")))
    await asyncio.wait_for(publisher.started.wait(), 10)
    stopping = asyncio.create_task(serving.__aexit__(None, None, None))
    assert await idle.closed()  # closed by the drain, while the busy one waits
    assert not stopping.done()
    publisher.release.set()
    status, headers, body = await busy.answer()
    assert (status, body, headers["connection"]) == (200, b"ok", "close")
    await asyncio.wait_for(stopping, 30)
    with pytest.raises(OSError):  # no longer listening
        await asyncio.open_connection(host, int(port))


def test_the_lane_hands_over_under_uvloop(settings: Settings, bus: Bus) -> None:
    """Production runs on uvloop, whose transports differ from asyncio's: plain, chunked
    (handed over) and plain again on one connection, and a request aiohttp refuses.
    (``bus``: its teardown removes the queues this gateway declares on the prefix.)"""
    import uvloop

    async def scenario() -> list[int]:
        async with running(create_app(settings)) as url:
            host, port = url.removeprefix("http://").split(":")
            connection = Connection(*await asyncio.open_connection(host, int(port)))
            body = _body(f"wamid.lane.{uuid.uuid4().hex}")
            chunked = (
                b"POST /webhook/whatsapp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"X-Hub-Signature-256: " + sign(body).encode() + b"\r\n\r\n"
                + f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
            )  # fmt: skip
            await connection.send(_request(body) + chunked + _request(body))
            statuses = [(await connection.answer())[0] for _ in range(3)]
            connection.writer.close()
            bare = Connection(*await asyncio.open_connection(host, int(port)))
            await bare.send(b"POST /webhook/whatsapp HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}")
            statuses.append((await bare.answer())[0])
            bare.writer.close()
            return statuses

    assert uvloop.run(scenario()) == [200, 200, 200, 400]
