"""Hostile input: never a 500, never a crash, never an event from an unsigned request."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from shared.bus import Bus
from shared.events import InboundMessage
from tests.gateway.conftest import (
    Collector,
    assert_nothing_else,
    delete_unrouted,
    gateway_settings,
    post,
)
from tests.gateway.payloads import STATUSES, catalog, contact, sign, value, webhook
from tests.services import running

pytestmark = pytest.mark.integration

SMALL_LIMIT = 64 * 1024


@pytest.fixture
async def small_gateway(rabbitmq_url: str, bus_prefix: str, bus: Bus) -> AsyncIterator[str]:
    settings = gateway_settings(rabbitmq_url, bus_prefix, WEBHOOK_MAX_BYTES=SMALL_LIMIT)
    async with running(create_app(settings)) as url:
        yield url
    await delete_unrouted(bus)


def rich_payload() -> dict[str, Any]:
    messages = [m for _, m, _ in catalog()][:8]
    return webhook(value(contacts=[contact()], messages=messages), value(statuses=STATUSES[:2]))


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=",
        "sha256=" + "0" * 64,
        "sha1=" + "0" * 40,
        "sha256=zz",
        "sha256=ñandú",
        "SHA256=" + "0" * 64,
        sign(b"another body"),
        sign(json.dumps(rich_payload()).encode(), secret="wrong-secret"),
    ],
)
async def test_bad_signatures_are_401_and_publish_nothing(
    gateway: str, http: aiohttp.ClientSession, collector: Collector, caplog, signature
) -> None:
    caplog.set_level(logging.DEBUG)
    body = json.dumps(rich_payload()).encode()
    status, text = await post(http, gateway, body=body, signature=signature)
    assert status == 401
    assert "X-Hub-Signature-256" in text
    assert "Firma de webhook válida" not in caplog.text
    assert "Hablar con agente" not in caplog.text  # the unsigned body is never logged
    await assert_nothing_else(http, gateway, collector)


async def test_signature_over_re_serialised_json_is_refused(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    # Meta escapes non-ASCII (\u00f1); a signature over other bytes of the "same" JSON is wrong.
    payload = rich_payload()
    meta_bytes = json.dumps(payload, ensure_ascii=True).encode()
    other_bytes = json.dumps(payload, ensure_ascii=False).encode()
    assert meta_bytes != other_bytes
    status, _ = await post(http, gateway, body=other_bytes, signature=sign(meta_bytes))
    assert status == 401
    status, _ = await post(http, gateway, body=meta_bytes, signature=sign(meta_bytes))
    assert status == 200


# --------------------------------------------------------------------------- bodies


async def test_oversized_body_is_413(
    small_gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    payload = webhook(
        value(
            contacts=[contact()],
            messages=[
                {
                    "from": "5491135722871",
                    "id": "wamid.big",
                    "timestamp": "1",
                    "type": "text",
                    "text": {"body": "x" * SMALL_LIMIT},
                }
            ],
        )
    )
    body = json.dumps(payload).encode()
    status, text = await post(http, small_gateway, body=body)
    assert status == 413
    assert "body over" in text

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    async with http.post(
        small_gateway + "/webhook/whatsapp",
        data=chunks(),
        headers={"X-Hub-Signature-256": sign(body)},
    ) as response:
        assert response.status == 413
    await assert_nothing_else(http, small_gateway, collector)


async def test_chunked_body_under_the_limit_is_read_whole(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    body = json.dumps(rich_payload()).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    async with http.post(
        gateway + "/webhook/whatsapp", data=chunks(), headers={"X-Hub-Signature-256": sign(body)}
    ) as response:
        assert response.status == 200
    assert len(await collector.wait(10)) == 10


async def test_default_limit_is_meta_maximum(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    body = b" " * (3 * 1024 * 1024 + 1)
    status, _ = await post(http, gateway, body=body)
    assert status == 413
    messages = [
        {
            "from": "5491135722871",
            "id": f"wamid.{i}",
            "timestamp": "1",
            "type": "text",
            "text": {"body": "y" * 3000},
        }
        for i in range(1000)
    ]
    body = json.dumps(webhook(value(contacts=[contact()], messages=messages))).encode()
    assert 3_000_000 < len(body) <= 3 * 1024 * 1024
    status, _ = await post(http, gateway, body=body)
    assert status == 200
    assert len(await collector.wait(1000)) == 1000


async def _raw_request(url: str, head: bytes, body: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + body)
    await writer.drain()
    writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_truncated_bodies(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    body = json.dumps(rich_payload()).encode()
    # The connection ends before Content-Length bytes arrive: no answer needed, no crash.
    head = (
        b"POST /webhook/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Hub-Signature-256: " + sign(body).encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    answer = await _raw_request(gateway, head, body[: len(body) // 2])
    assert b" 500 " not in answer
    # A body cut short but signed as sent: not JSON, 400.
    cut = body[: len(body) // 2]
    status, text = await post(http, gateway, body=cut)
    assert (status, text.split(":")[0]) == (400, "body is not JSON")
    await assert_nothing_else(http, gateway, collector)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"object": "whatsapp_business_account", "entry": [',
        b'\xff\xfe{"object": 1}',
        b'{"object": "whatsapp_business_account", "x": "\xc3\x28"}',
        b'{"a": "\\ud800"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"1e999",
    ],
)
async def test_signed_garbage_is_400(
    gateway: str, http: aiohttp.ClientSession, collector: Collector, body: bytes
) -> None:
    status, text = await post(http, gateway, body=body)
    assert status == 400, text
    assert text.startswith("body is not JSON")
    await assert_nothing_else(http, gateway, collector)


@pytest.mark.parametrize("depth", [60, 190, 240])
async def test_deep_nesting_inside_a_message_is_carried(
    gateway: str, http: aiohttp.ClientSession, collector: Collector, depth: int
) -> None:
    nested: Any = "bottom"
    for _ in range(depth):
        nested = {"n": [nested]}
    payload = webhook(
        value(
            contacts=[contact()],
            messages=[
                {
                    "from": "5491135722871",
                    "id": "wamid.deep",
                    "timestamp": "1",
                    "type": "hologram",
                    "hologram": nested,
                    "unknown_field": {"x": 1},
                    "context": {"referred_product": nested},
                    "referral": nested,
                }
            ],
        )
    )
    payload["unknown_top"] = {"a": [1, 2]}
    payload["entry"][0]["unknown_entry"] = True
    assert await post(http, gateway, payload) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, InboundMessage)
    assert event.wamid == "wamid.deep"
    assert event.message_type == "unsupported"
    assert event.sender.phone == "+5491135722871"
    if depth == 60:
        assert event.raw["hologram"] == nested
    else:  # past pydantic's serialisation depth: the event still goes, without Meta's objects
        assert event.raw["truncated"].startswith("not serialisable")
        assert event.raw["type"] == "hologram"


# --------------------------------------------------------------------------- wrong types


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*path, index))


def _replace(payload: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    copied = copy.deepcopy(payload)
    node = copied
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = replacement
    return copied


WRONG = [None, 0, -1, 2**70, 1.5, "", "x", True, [], {}, [None], {"x": None}]


@pytest.fixture
async def patient_gateway(rabbitmq_url: str, bus_prefix: str, bus: Bus) -> AsyncIterator[str]:
    # A thousand webhooks on a shared machine: a slow confirm must not read as a failure here.
    settings = gateway_settings(rabbitmq_url, bus_prefix, PUBLISH_TIMEOUT_SECONDS=20.0)
    async with running(create_app(settings)) as url:
        yield url
    await delete_unrouted(bus)


async def test_wrong_types_in_every_field_never_500(
    patient_gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    gateway = patient_gateway
    base = rich_payload()
    paths = list(_paths(base))
    assert len(paths) > 100
    statuses: dict[int, int] = {}
    sem = asyncio.Semaphore(8)

    async def one(path: tuple[Any, ...], wrong: Any) -> None:
        async with sem:
            status, _ = await post(http, gateway, _replace(base, path, wrong))
        statuses[status] = statuses.get(status, 0) + 1
        assert status == 200, (path, wrong)

    await asyncio.gather(*(one(p, w) for p in paths for w in WRONG))
    assert statuses == {200: len(paths) * len(WRONG)}
    async with http.get(gateway + "/healthz") as response:
        assert response.status == 200


async def test_an_unforeseen_failure_answers_503_not_500() -> None:
    """Whatever breaks inside a handler, Meta gets a 503 (it retries), never a 500."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from gateway.app import guarded

    async def broken(request: web.Request) -> web.Response:
        raise KeyError("a bug")

    app = web.Application()
    app.router.add_post("/webhook/whatsapp", guarded(broken))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/webhook/whatsapp", data=b"{}")
        assert response.status == 503
        assert "retry later" in await response.text()


async def test_the_app_answers_503_not_500_on_every_route(
    gateway: str, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The running app has no middleware: each route carries the guard itself."""
    from aiohttp import web

    import shared.ops
    from gateway import app as gateway_app

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(gateway_app, "receive_whatsapp", broken)
    monkeypatch.setattr(gateway_app, "verify_subscription", broken)
    monkeypatch.setattr(gateway_app, "receive_ses", broken)
    monkeypatch.setattr(shared.ops, "generate_latest", broken)
    monkeypatch.setattr(web, "json_response", broken)
    status, text = await post(http, gateway, webhook(value(statuses=STATUSES[:1])))
    assert (status, text) == (503, "temporary failure, retry later")
    async with http.post(gateway + "/webhook/ses", data=b"{}") as response:
        assert response.status == 503
    for path in ("/webhook/whatsapp?hub.mode=subscribe", "/metrics", "/healthz", "/readyz"):
        async with http.get(gateway + path) as response:
            assert response.status == 503, path
            assert await response.text() == "temporary failure, retry later"
    # Routing answers (HTTP exceptions) pass through as before.
    async with http.get(gateway + "/nowhere") as response:
        assert response.status == 404
    async with http.put(gateway + "/webhook/whatsapp") as response:
        assert response.status == 405


def test_every_route_of_the_app_is_guarded(rabbitmq_url: str) -> None:
    """No middleware runs: each route, the ops endpoints included, carries the guard itself."""
    from gateway.app import guarded
    from shared.ops import healthz

    app = create_app(gateway_settings(rabbitmq_url, "unused"))
    guard = guarded(healthz).__code__
    paths = set()
    for route in app.router.routes():
        assert route.handler.__code__ is guard, route
        paths.add(route.resource.canonical if route.resource else "")
    assert {"/metrics", "/healthz", "/readyz", "/webhook/whatsapp", "/webhook/ses"} <= paths
