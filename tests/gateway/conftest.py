"""A running gateway on real RabbitMQ, and a queue that collects everything it publishes."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import pytest
from aio_pika.abc import AbstractIncomingMessage

from gateway.app import create_app
from gateway.publisher import UNROUTED_SERVICE
from gateway.settings import Settings
from sandbox.app import create_app as create_sandbox
from shared.bus import Bus
from shared.events import EmailDelivered, Event, parse_event
from shared.settings import load_settings
from tests.gateway.payloads import (
    SECRET,
    VERIFY_TOKEN,
    contact,
    dumps,
    message,
    sign,
    value,
    webhook,
)
from tests.helpers import wait_for
from tests.sandbox.support import Api, make_config
from tests.services import running
from tests.snsfake import FakeSns


def gateway_settings(rabbitmq_url: str, bus_prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "META_WA_APP_SECRET": SECRET,
        "META_WA_VERIFY_TOKEN": VERIFY_TOKEN,
        "RABBITMQ_URL": rabbitmq_url,
        "BUS_PREFIX": bus_prefix,
        "PUBLISH_TIMEOUT_SECONDS": 2.0,
        "STARTUP_TIMEOUT_SECONDS": 10.0,
        **overrides,
    }
    return load_settings(Settings, **values)


@dataclass
class Collector:
    """Every event published on a prefix's exchange (a queue bound to ``#``)."""

    events: list[Event] = field(default_factory=list)
    messages: list[AbstractIncomingMessage] = field(default_factory=list)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)
        self.events.append(parse_event(message.type or "", message.body))
        await message.ack()

    async def wait(self, count: int, timeout: float = 10.0) -> list[Event]:
        await wait_for(
            lambda: len(self.events) >= count,
            timeout=timeout,
            message=f"{count} events (have {len(self.events)})",
        )
        return list(self.events)

    def of_type(self, cls: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


@pytest.fixture
async def collector(bus: Bus) -> AsyncIterator[Collector]:
    channel = await bus.connection.channel()
    exchange = await channel.declare_exchange(
        bus.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")
    collected = Collector()
    tag = await queue.consume(collected.on_message)
    yield collected
    with contextlib.suppress(Exception):
        await queue.cancel(tag)
    await channel.close()


@pytest.fixture
def settings(rabbitmq_url: str, bus_prefix: str) -> Settings:
    return gateway_settings(rabbitmq_url, bus_prefix)


async def delete_unrouted(bus: Bus) -> None:
    channel = await bus.connection.channel()
    with contextlib.suppress(Exception):
        await channel.queue_delete(bus.names.queue(UNROUTED_SERVICE))
    with contextlib.suppress(Exception):
        await channel.close()


@pytest.fixture
async def gateway(settings: Settings, bus: Bus) -> AsyncIterator[str]:
    async with running(create_app(settings)) as url:
        yield url
    await delete_unrouted(bus)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sandbox(gateway: str, http: aiohttp.ClientSession) -> AsyncIterator[Api]:
    """The sandbox (a local Meta), posting its signed webhooks to the running gateway."""
    config = make_config(webhook_url=gateway + "/webhook/whatsapp", app_secret=SECRET)
    async with running(create_sandbox(config)) as base:
        yield Api(http, base)


async def post(
    http: aiohttp.ClientSession,
    url: str,
    payload: Any = None,
    *,
    body: bytes | None = None,
    signature: str | None = "auto",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    raw = body if body is not None else dumps(payload)
    sent = dict(headers or {})
    sent.setdefault("Content-Type", "application/json")
    if signature == "auto":
        sent["X-Hub-Signature-256"] = sign(raw)
    elif signature is not None:
        sent["X-Hub-Signature-256"] = signature
    async with http.post(url + "/webhook/whatsapp", data=raw, headers=sent) as response:
        return response.status, await response.text()


async def assert_nothing_else(
    http: aiohttp.ClientSession, url: str, collector: Collector, before: int = 0
) -> None:
    """Nothing was published since ``before`` events: a signed marker webhook is the only new one.

    Events leave the gateway on one channel, in order, into one queue: once the marker is there,
    anything published before it would be there too. No sleeping on a negative.
    """
    marker = f"wamid.marker.{uuid.uuid4().hex}"
    payload = webhook(
        value(contacts=[contact()], messages=[message(marker, "text", {"body": "x"})])
    )
    status, _ = await post(http, url, payload)
    assert status == 200
    await collector.wait(before + 1)
    new = collector.events[before:]
    assert [getattr(e, "wamid", None) for e in new] == [marker], new


# --------------------------------------------------------------------------- SES through SNS


def sns_settings(rabbitmq_url: str, bus_prefix: str, sns: FakeSns, **extra: Any) -> Settings:
    return gateway_settings(
        rabbitmq_url, bus_prefix, SNS_TRUSTED_CERT_URL_PREFIXES=[sns.base + "/"], **extra
    )


@pytest.fixture
async def ses_gateway(
    rabbitmq_url: str, bus_prefix: str, bus: Bus, fake_sns: FakeSns
) -> AsyncIterator[str]:
    async with running(create_app(sns_settings(rabbitmq_url, bus_prefix, fake_sns))) as url:
        yield url
    await delete_unrouted(bus)


async def post_sns(
    http: aiohttp.ClientSession, url: str, data: dict[str, str] | bytes
) -> tuple[int, str]:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "x"}
    async with http.post(url + "/webhook/ses", data=body, headers=headers) as response:
        return response.status, await response.text()


async def marker(
    http: aiohttp.ClientSession, url: str, sns: FakeSns, collector: Collector, before: int
) -> None:
    """Only a signed marker arrives after ``before`` events: nothing else was published."""
    delivery = {
        "eventType": "Delivery",
        "delivery": {"recipients": ["ok@example.com"]},
        "mail": {"messageId": "marker-" + uuid.uuid4().hex},
    }
    status, _ = await post_sns(http, url, sns.message(message=delivery))
    assert status == 200
    await collector.wait(before + 1)
    new = collector.events[before:]
    assert len(new) == 1 and isinstance(new[0], EmailDelivered), new
