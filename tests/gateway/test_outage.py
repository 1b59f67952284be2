"""The broker goes away mid-request: 503, then after recovery the same webhook is accepted.

The gateway reaches RabbitMQ through a TCP proxy this test controls (no mock of the bus): the
proxy can swallow the broker's answers (confirms never come back) or cut every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import pytest

from gateway.app import create_app
from shared.bus import Bus
from shared.events import InboundMessage, MessageStatus
from tests.gateway.conftest import Collector, delete_unrouted, gateway_settings, post
from tests.gateway.payloads import STATUSES, catalog, contact, value, webhook
from tests.helpers import wait_for
from tests.services import running

pytestmark = pytest.mark.integration


@dataclass
class TcpProxy:
    upstream_host: str
    upstream_port: int
    hold_answers: bool = False  # broker -> gateway bytes are dropped
    refuse: bool = False  # new connections are closed at once
    upstream_bytes: int = 0  # gateway -> broker bytes forwarded
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, upstream=True)),
            asyncio.create_task(self._pump(up_reader, writer, upstream=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                if upstream:
                    self.upstream_bytes += len(data)
                elif self.hold_answers:
                    continue
                writer.write(data)
                await writer.drain()
        writer.close()

    def cut(self) -> None:
        """Close every proxied connection and refuse new ones."""
        self.refuse = True
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def restore(self) -> None:
        self.refuse = False
        self.hold_answers = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def proxy(rabbitmq_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    parts = urlsplit(rabbitmq_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    port = await proxy.start()
    url = f"{parts.scheme}://{parts.username}:{parts.password}@127.0.0.1:{port}/?reconnect_interval=0.2"
    yield proxy, url
    await proxy.close()


def payload_with_many_updates() -> dict[str, object]:
    messages = [m for _, m, _ in catalog()]
    return webhook(value(contacts=[contact()], messages=messages), value(statuses=STATUSES))


def expected_ids(collector: Collector) -> set[tuple[str, str, str]]:
    """The distinct updates collected (duplicates from before the cut count once)."""
    return {(e.type, getattr(e, "wamid", ""), getattr(e, "status", "")) for e in collector.events}


async def readiness(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/readyz") as response:
        return response.status


async def test_broker_lost_mid_request_is_503_then_same_webhook_accepted(
    proxy: tuple[TcpProxy, str],
    rabbitmq_url: str,
    bus_prefix: str,
    bus: Bus,
    collector: Collector,
    http: aiohttp.ClientSession,
) -> None:
    tcp, url = proxy
    settings = gateway_settings(url, bus_prefix, PUBLISH_TIMEOUT_SECONDS=1.5)
    payload = payload_with_many_updates()
    count = len(catalog()) + len(STATUSES)
    try:
        async with running(create_app(settings)) as gateway:
            # The broker's confirms stop coming back; the connection is cut while the gateway
            # waits for them.
            tcp.hold_answers = True
            before = tcp.upstream_bytes
            request = asyncio.create_task(post(http, gateway, payload))
            await wait_for(lambda: tcp.upstream_bytes > before, message="publishing started")
            tcp.cut()
            status, text = await asyncio.wait_for(request, 10)
            assert (status, text) == (503, "broker unavailable, retry later")
            assert await readiness(http, gateway) == 503
            # While it is down, every webhook is refused the same way (bounded, not hanging).
            assert (await post(http, gateway, payload))[0] == 503

            tcp.restore()
            await wait_for(lambda: _ready(http, gateway), timeout=15, message="reconnected")
            assert await post(http, gateway, payload) == (200, "ok")
            await wait_for(lambda: len(expected_ids(collector)) == count, message="all events")
            inbound = collector.of_type(InboundMessage)
            assert {e.wamid for e in inbound} == {m["id"] for _, m, _ in catalog()}
            statuses = {(e.wamid, e.status) for e in collector.of_type(MessageStatus)}
            assert statuses == {(s["id"], s["status"]) for s in STATUSES}
            # Events that reached the broker before the cut are duplicates with the same ids.
            ids_by_update: dict[tuple[str, str, str], set[str]] = {}
            for event in collector.events:
                key = (event.type, getattr(event, "wamid", ""), getattr(event, "status", ""))
                ids_by_update.setdefault(key, set()).add(event.event_id)
            assert all(len(ids) == 1 for ids in ids_by_update.values())
    finally:
        await delete_unrouted(bus)


async def test_broker_down_before_request_is_503_within_bound(
    proxy: tuple[TcpProxy, str],
    bus_prefix: str,
    bus: Bus,
    collector: Collector,
    http: aiohttp.ClientSession,
) -> None:
    tcp, url = proxy
    settings = gateway_settings(url, bus_prefix, PUBLISH_TIMEOUT_SECONDS=1.0)
    try:
        async with running(create_app(settings)) as gateway:
            tcp.cut()
            await wait_for(lambda: _not_ready(http, gateway), message="gateway sees it down")
            loop = asyncio.get_running_loop()
            started = loop.time()
            status, _ = await post(http, gateway, payload_with_many_updates())
            assert status == 503
            assert loop.time() - started < 3.0
            tcp.restore()
            await wait_for(lambda: _ready(http, gateway), timeout=15, message="reconnected")
            assert (await post(http, gateway, payload_with_many_updates()))[0] == 200
            await collector.wait(len(catalog()) + len(STATUSES))
            async with http.get(gateway + "/metrics") as response:
                text = await response.text()
            assert (
                'gateway_webhook_requests_total{endpoint="whatsapp",outcome="unavailable"} 1.0'
                in text
            )
    finally:
        await delete_unrouted(bus)


async def _ready(http: aiohttp.ClientSession, url: str) -> bool:
    return await readiness(http, url) == 200


async def _not_ready(http: aiohttp.ClientSession, url: str) -> bool:
    return await readiness(http, url) == 503
