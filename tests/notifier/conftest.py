"""Fixtures for the notifier: moto's SES server, a throttling proxy, a running notifier."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import pytest
import yaml
from aiohttp import web

from notifier.app import create_app
from notifier.bootstrap import Adapters
from notifier.handlers import TABLE
from notifier.settings import Settings
from shared.bus import Bus
from tests.helpers import wait_for
from tests.services import running


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server on 127.0.0.1 and an ephemeral port, for the whole session.

    moto keeps sent mail process-wide, so tests tell theirs apart by unique addresses.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


async def moto_mails(
    moto_url: str, *, to: str | None = None, sender: str | None = None
) -> list[dict[str, Any]]:
    """Mail moto's SES accepted (``/moto-api/data.json``), optionally for one recipient/sender."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{moto_url}/moto-api/data.json") as response,
    ):
        data = json.loads(await response.read())
    found = []
    for message in data.get("ses", {}).get("Message", []):
        addresses = [a for group in message["destinations"].values() for a in group]
        if to is not None and to not in addresses:
            continue
        if sender is not None and message["source"] != sender:
            continue
        found.append({**message, "to": addresses})
    return found


async def wait_for_mails(
    moto_url: str, *, to: str, count: int = 1, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Wait until moto holds at least ``count`` mails to ``to``; returns them all."""

    async def enough() -> list[dict[str, Any]]:
        found = await moto_mails(moto_url, to=to)
        return found if len(found) >= count else []

    found: list[dict[str, Any]] = await wait_for(
        enough, timeout=timeout, interval=0.05, message=f"{count} mail(s) to {to}"
    )
    return found


async def create_identities(moto_url: str, *identities: str) -> None:
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    async with session.client("sesv2", endpoint_url=moto_url) as client:
        for identity in identities:
            await client.create_email_identity(EmailIdentity=identity)


@dataclass
class ThrottlingProxy:
    """An HTTP proxy in front of moto answering the first ``throttle`` sends with a 429."""

    target: str
    throttle: int = 0
    sends: int = 0
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)  # send_email bodies

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "POST" and request.path == "/v2/email/outbound-emails":
            self.sends += 1
            self.requests.append(json.loads(body))
            if self.sends <= self.throttle:
                return web.json_response(
                    {"message": "Maximum sending rate exceeded."},
                    status=429,
                    headers={
                        "x-amzn-ErrorType": "TooManyRequestsException",
                        "x-amzn-RequestId": f"throttled-{self.sends}",
                    },
                )
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.target + request.path_qs, headers=headers, data=body
            ) as upstream,
        ):
            payload = await upstream.read()
            keep = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower()
                not in ("content-length", "transfer-encoding", "connection", "content-encoding")
            }
            return web.Response(status=upstream.status, body=payload, headers=keep)


@pytest.fixture
async def throttling_proxy(moto_url: str) -> AsyncIterator[ThrottlingProxy]:
    proxy = ThrottlingProxy(target=moto_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    async with running(app) as url:
        proxy.url = url
        yield proxy


@dataclass
class Addresses:
    """Unique addresses for one test (moto's mailbox is shared by the session)."""

    unique: str

    @property
    def errors(self) -> str:
        return f"errores-{self.unique}@example.com"

    @property
    def error_sender(self) -> str:
        return f"alertas-{self.unique}@example.com"

    @property
    def bot(self) -> str:
        return f"bot-{self.unique}@example.com"

    @property
    def ops(self) -> str:
        return f"ops-{self.unique}@example.com"

    @property
    def boss(self) -> str:
        return f"jefa-{self.unique}@example.com"

    @property
    def reply_to(self) -> str:
        return f"responder-{self.unique}@example.com"


@pytest.fixture
def addresses(unique: str) -> Addresses:
    return Addresses(unique)


@pytest.fixture
def profiles_file(tmp_path: Path, addresses: Addresses) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "profiles": [
                    {
                        "id": "acme",
                        "name": "Acme SRL",
                        "email_bot": addresses.bot,
                        "notification_emails": [addresses.ops, addresses.boss],
                        "reply_to": addresses.reply_to,
                        "timezone": "America/Argentina/Buenos_Aires",
                    },
                    {
                        "id": "plain",
                        "name": "Sencillo",
                        "email_bot": addresses.bot,
                        "notification_emails": [addresses.boss],
                    },
                    {
                        "id": "unverified",
                        "name": "Sin Verificar SA",
                        "email_bot": f"nadie-{addresses.unique}@example.com",
                        "notification_emails": [addresses.ops],
                    },
                ]
            },
            allow_unicode=True,
        ),
        "utf-8",
    )
    return path


@pytest.fixture
def make_settings(
    rabbitmq_url: str,
    database_url: str,
    bus_prefix: str,
    db_schema: str,
    moto_url: str,
    addresses: Addresses,
    profiles_file: Path,
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "MENSAJERO_ENV": "test",
            "RABBITMQ_URL": rabbitmq_url,
            "DATABASE_URL": database_url,
            "BUS_PREFIX": bus_prefix,
            "DB_SCHEMA": db_schema,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "SES_ENDPOINT_URL": moto_url,
            "ERROR_LOG_EMAIL": addresses.errors,
            "ERROR_FROM_EMAIL": addresses.error_sender,
            "REPLY_TO_EMAIL": addresses.reply_to,
            "COMPANY_PROFILES_FILE": str(profiles_file),
            "SES_RATE_PER_SECOND": 500,
            "SES_BACKOFF_SECONDS": 0.01,
            "SES_BACKOFF_MAX_SECONDS": 0.05,
            "SES_MAX_ATTEMPTS": 5,
            "DIGEST_FLUSH_INTERVAL_SECONDS": 0.05,
            "ERROR_DIGEST_WINDOW_SECONDS": 60,
            "ERROR_MAILS_PER_MINUTE": 100,
            "STARTUP_TIMEOUT_SECONDS": 5,
            "SHUTDOWN_GRACE_SECONDS": 2,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@dataclass
class RunningNotifier:
    url: str
    app: web.Application


StartNotifier = Callable[..., Awaitable[RunningNotifier]]


@pytest.fixture
async def start_notifier(bus: Bus) -> AsyncIterator[Callable[..., Any]]:
    """Start the notifier (``create_app`` on 127.0.0.1:0); stopped and its queues removed after."""
    stack: list[Any] = []

    @asynccontextmanager
    async def start(settings: Settings, **edges: Any) -> AsyncIterator[RunningNotifier]:
        app = create_app(settings, Adapters(**edges))
        async with running(app) as url:
            yield RunningNotifier(url=url, app=app)

    async def begin(settings: Settings, **edges: Any) -> RunningNotifier:
        """``edges``: the notifier's Adapters (``clock=``, ``mailer=``)."""
        manager = start(settings, **edges)
        stack.append(manager)
        return await manager.__aenter__()

    yield begin
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)
    await bus.delete_topology([TABLE.spec()])
