"""The gateway's composition root and its use cases on fake edges (no broker, no network);
the same paths on the real ones are the integration tests beside this one."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.app import create_app
from gateway.bootstrap import Adapters, Gateway, bootstrap
from gateway.handlers import PUBLISH_CHUNK, receive_ses, receive_whatsapp
from gateway.publisher import Publisher
from gateway.sns import CertificateStore, SnsUnavailable
from gateway.sns_http import HttpFetcher
from shared.bus import Bus, BusUnavailable
from shared.events import InboundMessage
from shared.feed import FeedQueue
from shared.resources import BrokerConnection
from tests.fakes.gateway import FakeFetcher, FakePublisher
from tests.gateway.conftest import Collector, gateway_settings, post
from tests.gateway.payloads import contact, dumps, message, sign, value, webhook
from tests.services import running
from tests.snsfake import FakeSns, make_certificate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SNS_BASE = "https://sns.us-east-1.amazonaws.com"


def faked(publisher: FakePublisher, fetcher: FakeFetcher | None = None) -> Gateway:
    settings = gateway_settings("amqp://guest:guest@127.0.0.1:5672/", "unused")
    adapters = Adapters(
        publisher=lambda _bus, _metrics, _timeout: publisher,
        fetcher=lambda _timeout: fetcher or FakeFetcher(),
        clock=lambda: NOW,
    )
    return bootstrap(settings, adapters)


def test_bootstrap_builds_the_service_without_io() -> None:
    gateway = bootstrap(gateway_settings("amqp://127.0.0.1:1/", "unused"))
    service = gateway.service
    assert [type(r) for r in service.resources] == [
        BrokerConnection,
        Publisher,
        FeedQueue,
        HttpFetcher,
        CertificateStore,
    ]
    assert list(service.checks) == ["rabbitmq"]
    assert (service.subscriptions, service.loops) == ((), ())
    assert gateway.deps.publisher is service.resources[1]
    assert gateway.deps.config.app_secret == b"test-app-secret"


async def test_a_webhook_is_published_with_the_clock_standing_in_for_a_missing_time() -> None:
    publisher = FakePublisher()
    gateway = faked(publisher)
    untimed = message("wamid.t", "text", {"body": "Hola"})
    del untimed["timestamp"]
    body = dumps(webhook(value(contacts=[contact()], messages=[untimed])))
    answer = await receive_whatsapp(gateway.deps, body, sign(body))
    assert (answer.status, answer.outcome) == (200, "accepted")
    [event] = publisher.published
    assert isinstance(event, InboundMessage) and event.timestamp == NOW


async def test_a_broker_that_does_not_confirm_is_a_503_and_skips_are_counted_by_field() -> None:
    publisher = FakePublisher(failure=BusUnavailable("no confirm"))
    gateway = faked(publisher)
    body = dumps(webhook(value(messages=[message("", "text", {"body": "lost"})])))
    assert (await receive_whatsapp(gateway.deps, body, sign(body))).status == 200  # nothing left
    body = dumps(webhook(value(messages=[message("wamid.x", "text", {"body": "Hola"})])))
    answer = await receive_whatsapp(gateway.deps, body, sign(body))
    assert (answer.status, answer.outcome) == (503, "unavailable")
    registry = gateway.service.registry
    labels = {"reason": "malformed", "field": "messages"}
    assert registry.get_sample_value("gateway_updates_skipped_total", labels) == 1.0


async def test_a_large_webhook_is_published_in_chunks_and_answered_once_all_are_done() -> None:
    publisher = FakePublisher()
    gateway = faked(publisher)
    count = 2 * PUBLISH_CHUNK + 50
    wamids = [f"wamid.chunk.{n}" for n in range(count)]
    body = dumps(webhook(value(messages=[message(w, "text", {"body": "Hola"}) for w in wamids])))
    answer = await receive_whatsapp(gateway.deps, body, sign(body))
    assert (answer.status, answer.outcome) == (200, "accepted")
    assert [e.wamid for e in publisher.published if isinstance(e, InboundMessage)] == wamids
    failing = faked(FakePublisher(failure=BusUnavailable("no confirm")))
    answer = await receive_whatsapp(failing.deps, body, sign(body))
    assert (answer.status, answer.outcome) == (503, "unavailable")


async def test_an_sns_subscription_is_verified_and_confirmed_through_the_fetcher() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sns = FakeSns(key, base=SNS_BASE)
    confirmation = sns.message("SubscriptionConfirmation")
    fetcher = FakeFetcher(
        {sns.cert_url(): make_certificate(key), confirmation["SubscribeURL"]: b""}
    )
    gateway = faked(FakePublisher(), fetcher)
    answer = await receive_ses(gateway.deps, json.dumps(confirmation).encode())
    assert (answer.status, answer.outcome) == (200, "confirmed")
    assert fetcher.fetched == [sns.cert_url(), confirmation["SubscribeURL"]]


async def test_a_certificate_fetch_nobody_waits_for_is_cancelled_at_stop() -> None:
    started = asyncio.Event()

    async def hang(url: str) -> bytes:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never")

    store = CertificateStore(hang, r"^sns\.example$")
    request = asyncio.ensure_future(store.key("https://sns.example/cert.pem"))
    await started.wait()
    request.cancel()  # the request gave up (shielded: the fetch goes on)
    await asyncio.gather(request, return_exceptions=True)
    [fetch] = store._loading.values()
    assert not fetch.done()
    await store.close()
    assert fetch.cancelled() and store._loading == {}


async def test_the_http_fetcher_says_when_it_is_not_started() -> None:
    with pytest.raises(SnsUnavailable, match="not started"):
        await HttpFetcher(1.0).fetch(SNS_BASE + "/x.pem")


@pytest.mark.integration
async def test_the_running_gateway_takes_its_clock_from_the_adapters(
    rabbitmq_url: str, bus_prefix: str, bus: Bus, collector: Collector
) -> None:
    settings = gateway_settings(rabbitmq_url, bus_prefix)
    untimed = message("wamid.clock", "text", {"body": "Hola"})
    del untimed["timestamp"]
    async with (
        running(create_app(settings, Adapters(clock=lambda: NOW))) as url,
        aiohttp.ClientSession() as http,
    ):
        payload = webhook(value(contacts=[contact()], messages=[untimed]))
        assert await post(http, url, payload) == (200, "ok")
        [event] = await collector.wait(1)
    assert isinstance(event, InboundMessage) and event.occurred_at == NOW
