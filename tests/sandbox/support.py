"""Helpers for the sandbox tests: a signed-webhook sink and a small client for the sandbox."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.config import SandboxConfig

DATA = Path(__file__).parent / "data"
TOKEN = "test-token"
SECRET = "test-app-secret"
PHONE_ID = "100000000000001"
WABA_ID = "200000000000001"
CUSTOMER = "+5491135722871"
AGENT = "+5491155550000"


def make_config(**overrides: Any) -> SandboxConfig:
    """Small delays and fast retries; the 24 h window is off unless a test turns it on."""
    values: dict[str, Any] = {
        "access_token": TOKEN,
        "app_secret": SECRET,
        "phone_number_id": PHONE_ID,
        "waba_id": WABA_ID,
        "display_phone_number": "+15550000001",
        "webhook_url": "http://127.0.0.1:9/unused",
        "status_delays_ms": (10, 60, 120),
        "webhook_batch_window_ms": 5,
        "webhook_retry_initial_seconds": 0.02,
        "webhook_retry_max_seconds": 0.1,
        "enforce_window": False,
        "rate_per_second": 10_000,
        "pair_burst": 1_000,
        "seed": 7,
    }
    values.update(overrides)
    return SandboxConfig(**values)


def load(path: str) -> Any:
    return json.loads((DATA / path).read_text(encoding="utf-8"))


def valid_signature(body: bytes, header: str | None, secret: str = SECRET) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def value(self) -> dict[str, Any]:
        value: dict[str, Any] = self.json["entry"][0]["changes"][0]["value"]
        return value


@dataclass
class Sink:
    """Stands where the gateway would: records every webhook, answers from a script."""

    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhook", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text="ok")

    def statuses(self, wamid: str | None = None) -> list[dict[str, Any]]:
        found = [s for r in self.received for s in r.value.get("statuses", [])]
        return [s for s in found if wamid is None or s["id"] == wamid]

    def messages(self) -> list[dict[str, Any]]:
        return [m for r in self.received for m in r.value.get("messages", [])]

    def of_field(self, field: str) -> list[Received]:
        """The webhooks of one field, each checked to be signed with the app secret."""
        found = [r for r in self.received if r.json["entry"][0]["changes"][0]["field"] == field]
        for received in found:
            assert valid_signature(received.body, received.headers.get("X-Hub-Signature-256"))
        return found


class Api:
    """The sandbox, seen from a client."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def request(
        self, method: str, path: str, *, token: str | None = TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.base + path, headers=headers, **kwargs
        ) as response:
            raw = await response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw

    async def send(
        self,
        body: Any,
        *,
        token: str | None = TOKEN,
        version: str = "v23.0",
        phone_id: str = PHONE_ID,
    ) -> tuple[int, Any]:
        return await self.request("POST", f"/{version}/{phone_id}/messages", token=token, json=body)

    async def text(self, to: str = CUSTOMER, body: str = "Hola", **extra: Any) -> tuple[int, Any]:
        message = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"body": body},
            **extra,
        }
        return await self.send(message)

    async def inbound(self, **fields: Any) -> tuple[int, Any]:
        return await self.request("POST", "/_sandbox/inbound", token=None, json=fields)

    async def get(self, path: str, **params: Any) -> Any:
        status, body = await self.request("GET", path, token=None, params=params)
        assert status == 200, body
        return body

    async def faults(self, **fault: Any) -> Any:
        status, body = await self.request("POST", "/_sandbox/faults", token=None, json=fault)
        assert status == 200, body
        return body

    async def emit(self, **fields: Any) -> dict[str, Any]:
        """`POST /_sandbox/webhooks/emit`, expected to be built and delivered."""
        status, body = await self.request(
            "POST", "/_sandbox/webhooks/emit", token=None, json=fields
        )
        assert status == 200, body
        assert body["gateway_status"] == 200, body
        answer: dict[str, Any] = body
        return answer

    async def inbox(self, phone: str = CUSTOMER, **params: Any) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = (
            await self.get(f"/_sandbox/phones/{phone}/messages", **params)
        )["messages"]
        return messages


def text_message(to: str = CUSTOMER, body: str = "Hola") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}


def to_bsuid(message: dict[str, Any], recipient: str) -> dict[str, Any]:
    """The same send, addressed by business-scoped user id instead of phone."""
    found = {k: v for k, v in message.items() if k != "to"}
    return {**found, "recipient": recipient}


def template_message(name: str, language: str, *params: str, to: str = CUSTOMER) -> dict[str, Any]:
    components = (
        [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]
        if params
        else []
    )
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": name, "language": {"code": language}, "components": components},
    }


def assert_meta_error(status: int, body: Any, code: int, http_status: int = 400) -> str:
    """Meta's error shape with this code and HTTP status; returns the details."""
    assert status == http_status, body
    error = body["error"]
    assert set(error) >= {"message", "type", "code", "error_data", "fbtrace_id"}, error
    assert error["code"] == code, error
    assert error["type"] in ("OAuthException", "GraphMethodException")
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    details: str = error["error_data"]["details"]
    return details


StartSandbox = Callable[..., Awaitable[Api]]
