"""The sender against the real sandbox, RabbitMQ and PostgreSQL, all in this process.

``stack`` starts: a webhook relay (standing in for the gateway: status webhooks from the sandbox
become ``MessageStatus`` events on the bus), the sandbox, an observer queue collecting what the
sender publishes, and a factory for sender apps (several may run: replicas).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.parser import parse_webhook
from sandbox.app import create_app as create_sandbox
from sandbox.config import SandboxConfig
from sender.app import send_queue_spec, status_queue_spec
from sender.bootstrap import Adapters, bootstrap
from sender.handlers import STATUSES
from sender.settings import Settings
from shared.bus import Bus, Delivery, QueueSpec
from shared.events import (
    ErrorReported,
    Event,
    MessageFailed,
    MessageSent,
    SendMessage,
)
from shared.ops import add_ops_routes
from shared.runner import Service, run_service
from tests.helpers import wait_for
from tests.services import running

NUMBER = "100000000000001"
# A 1x1 PNG (served by the relay for uploads from a URL).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
TOKEN = "sandbox-token"
SERVICE_KEY = web.AppKey("sender_service", Service)

# Short tiers and delays so the failure paths run in well under a second each.
FAST: dict[str, Any] = {
    "SENDER_RETRY_TIERS_MS": "20,50,100,200,400",
    "SENDER_BACKOFF_BASE_SECONDS": 0.02,
    "SENDER_BACKOFF_MAX_SECONDS": 0.4,
    "SENDER_CIRCUIT_PROBE_SECONDS": 0.3,
    "SENDER_PAIR_BACKOFF_SECONDS": 0.05,
    "SENDER_REQUEST_TIMEOUT_SECONDS": 1.0,
    "SENDER_STATUS_ORPHAN_SECONDS": 5.0,
    "SENDER_UNKNOWN_OUTCOME_SECONDS": 0.3,
    "SENDER_LEASE_EXTRA_SECONDS": 1.0,
    "SHUTDOWN_GRACE_SECONDS": 2.0,
}


def statuses_from_webhook(payload: dict[str, Any]) -> list[Event]:
    """What the gateway makes of a webhook (its own parser): the events the sender's status
    queue takes (statuses, and the template, customer and account signals it parses)."""
    parsed = parse_webhook(payload, received_at=datetime.now(UTC))
    return [event for event in parsed.events if isinstance(event, STATUSES.event_types)]


@dataclass
class Stack:
    bus: Bus
    sandbox_url: str
    settings: dict[str, Any]
    http: aiohttp.ClientSession
    relay_url: str = ""
    events: list[Event] = field(default_factory=list)
    apps: list[web.Application] = field(default_factory=list)
    start_app: Callable[..., Awaitable[web.Application]] | None = None
    # Webhook fields whose deliveries are lost on the way (Meta knows, the sender never hears).
    lost_fields: set[str] = field(default_factory=set)

    # -- sandbox
    async def fault(self, **fault: Any) -> None:
        async with self.http.post(f"{self.sandbox_url}/_sandbox/faults", json=fault) as r:
            assert r.status == 200, await r.text()

    async def clear_faults(self) -> None:
        async with self.http.delete(f"{self.sandbox_url}/_sandbox/faults") as r:
            assert r.status == 200

    async def inbound(self, phone: str, text: str = "hola") -> str:
        """The phone writes to the business (opens its 24 h window); returns the wamid."""
        return str((await self.write(**{"from": phone, "text": text}))["wamid"])

    async def write(self, **body: Any) -> dict[str, Any]:
        """A customer writes (``from`` and/or ``user_id``...): the sandbox's answer."""
        async with self.http.post(f"{self.sandbox_url}/_sandbox/inbound", json=body) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())

    async def emit(self, **body: Any) -> dict[str, Any]:
        """A webhook Meta would send (``field``, options): the sandbox changes what it keeps."""
        async with self.http.post(f"{self.sandbox_url}/_sandbox/webhooks/emit", json=body) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())

    async def phone(self, phone: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.sandbox_url}/_sandbox/phones/{phone}/messages") as r:
            return list((await r.json())["messages"])

    async def accepted(self) -> dict[str, Any]:
        async with self.http.get(f"{self.sandbox_url}/_sandbox/messages") as r:
            return dict(await r.json())

    # -- sender
    def settings_for(self, **overrides: Any) -> Settings:
        return Settings(**{**self.settings, **overrides})

    async def publish(self, command: SendMessage) -> SendMessage:
        await self.bus.publish(command)
        return command

    def of(self, cls: type[Event], command_id: str | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, cls)
            and (command_id is None or getattr(e, "command_id", None) == command_id)
        ]

    async def outcome(self, command: SendMessage, timeout: float = 10.0) -> Event:
        def found() -> Event | None:
            for e in self.events:
                if isinstance(e, MessageSent | MessageFailed) and e.command_id == command.event_id:
                    return e
            return None

        event: Event = await wait_for(
            found, timeout=timeout, message=f"outcome of {command.event_id}"
        )
        return event

    async def sent(self, command: SendMessage, timeout: float = 10.0) -> MessageSent:
        event = await self.outcome(command, timeout)
        assert isinstance(event, MessageSent), event
        return event

    async def failed(self, command: SendMessage, timeout: float = 10.0) -> MessageFailed:
        event = await self.outcome(command, timeout)
        assert isinstance(event, MessageFailed), event
        return event

    def metric(self, app: web.Application, name: str, **labels: str) -> float:
        from shared.ops import REGISTRY_KEY

        return app[REGISTRY_KEY].get_sample_value(name, labels) or 0.0


@pytest.fixture
def sandbox_overrides() -> dict[str, Any]:
    """Tests override the sandbox's configuration by redefining this fixture or mutating it."""
    return {}


@pytest.fixture
async def stack(
    bus: Bus,
    bus_prefix: str,
    db_schema: str,
    database_url: str,
    rabbitmq_url: str,
    sandbox_overrides: dict[str, Any],
) -> AsyncIterator[Stack]:
    lost_fields: set[str] = set()

    async def relay(request: web.Request) -> web.Response:
        payload = orjson.loads(await request.read())
        fields = {c.get("field") for e in payload.get("entry", []) for c in e.get("changes", [])}
        if fields & lost_fields:
            return web.Response(text="lost")
        for status in statuses_from_webhook(payload):
            await bus.publish(status)
        return web.Response(text="ok")

    files: dict[str, tuple[bytes, str]] = {"pixel.png": (PNG, "image/png")}

    async def serve_file(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[0], content_type=found[1])

    relay_app = web.Application()
    relay_app.router.add_post("/webhook", relay)
    relay_app.router.add_get("/files/{name}", serve_file)

    observed: list[Event] = []

    async def observe(event: Event, delivery: Delivery) -> None:
        observed.append(event)

    await bus.consume(
        QueueSpec(
            service="observer",
            routing_keys=[MessageSent.TYPE, MessageFailed.TYPE, ErrorReported.TYPE],
            retry_tiers_ms=(50,),
        ),
        observe,
    )
    # Statuses need a bound queue before the relay publishes (the sender's comes up later).
    async with running(relay_app) as relay_url, contextlib.AsyncExitStack() as stack_ctx:
        config = {
            "webhook_url": f"{relay_url}/webhook",
            "status_delays_ms": (20, 40, 60),
            "enforce_window": False,
            "webhook_retry_initial_seconds": 0.05,
            **sandbox_overrides,
        }
        sandbox_url = await stack_ctx.enter_async_context(
            running(create_sandbox(SandboxConfig(**config)))
        )
        settings: dict[str, Any] = {
            "RABBITMQ_URL": rabbitmq_url,
            "DATABASE_URL": database_url,
            "BUS_PREFIX": bus_prefix,
            "DB_SCHEMA": db_schema,
            "META_WA_ACCESS_TOKEN": TOKEN,
            "META_WA_PHONE_NUMBER_ID": NUMBER,
            "META_GRAPH_URL": sandbox_url,
            "SENDER_PORT": 0,
            **FAST,
        }
        http = await stack_ctx.enter_async_context(aiohttp.ClientSession())
        stack = Stack(
            bus=bus, sandbox_url=sandbox_url, settings=settings, http=http, relay_url=relay_url
        )
        stack.events = observed
        stack.lost_fields = lost_fields

        async def start_app(adapters: Adapters | None = None, **overrides: Any) -> web.Application:
            app = sender_app(stack.settings_for(**overrides), adapters)
            await stack_ctx.enter_async_context(running(app))
            stack.apps.append(app)
            return app

        stack.start_app = start_app
        try:
            yield stack
        finally:
            await stack_ctx.aclose()
            s = stack.settings_for()
            await bus.delete_topology([send_queue_spec(s), status_queue_spec(s)])


@pytest.fixture
async def sender(stack: Stack) -> web.Application:
    assert stack.start_app is not None
    return await stack.start_app()


def sender_app(settings: Settings, adapters: Adapters | None = None) -> web.Application:
    """As ``sender.app.create_app``, keeping the service for the tests to look into."""
    service = bootstrap(settings, adapters)
    app = web.Application()
    add_ops_routes(app, service.registry, service.checks)
    app.cleanup_ctx.append(run_service(service))
    app[SERVICE_KEY] = service
    return app


def service_of(app: web.Application) -> Service:
    return app[SERVICE_KEY]


def deps_of(app: web.Application) -> Any:
    """The handlers' dependencies (``sender.deps.Deps``) of a running sender."""
    return service_of(app).subscriptions[0].deps
