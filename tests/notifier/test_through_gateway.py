"""A signal as Meta sends it: the sandbox posts its `message_template_status_update` webhook
(PAUSED) to the gateway, which publishes the typed event; the notifier mails the operators.

Of the four signals the notifier mails about, the gateway on main parses only the template
status; account, number quality and category updates are tested from the typed events
(test_operator_alerts.py) until the gateway parses them.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.app import create_app as create_gateway
from sandbox.app import create_app as create_sandbox
from shared.bus import Bus
from tests.gateway.conftest import delete_unrouted, gateway_settings
from tests.gateway.payloads import SECRET
from tests.notifier.conftest import Addresses, create_identities, wait_for_mails
from tests.sandbox.support import make_config
from tests.services import running

pytestmark = pytest.mark.integration


async def test_a_template_paused_at_meta_mails_the_operators(
    bus: Bus,
    rabbitmq_url: str,
    bus_prefix: str,
    start_notifier,
    make_settings,
    moto_url,
    addresses: Addresses,
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    await start_notifier(make_settings())
    gateway_app = create_gateway(gateway_settings(rabbitmq_url, bus_prefix))
    try:
        async with running(gateway_app) as gateway:
            config = make_config(webhook_url=f"{gateway}/webhook/whatsapp", app_secret=SECRET)
            async with (
                running(create_sandbox(config)) as sandbox,
                aiohttp.ClientSession() as http,
            ):
                emitted = await emit(
                    http,
                    sandbox,
                    field="message_template_status_update",
                    name="hello_world",
                    language="en_US",
                    event="PAUSED",
                )
                assert emitted["gateway_status"] == 200, emitted
                [mail] = await wait_for_mails(moto_url, to=addresses.errors)
    finally:
        await delete_unrouted(bus)
    assert mail["subject"] == "[Mensajero] Meta pausó la plantilla hello_world (en_US)"
    body = mail["body"]
    for expected in (
        "Meta pausó la plantilla hello_world (en_US) porque los clientes la calificaron mal",
        "FIRST_PAUSE - Your WhatsApp message template has been paused because of low quality",
        "La primera pausa dura 3 horas",
        "Frená las campañas que usan esta plantilla",
    ):
        assert expected in body


async def emit(http: aiohttp.ClientSession, sandbox: str, **signal: Any) -> dict[str, Any]:
    async with http.post(f"{sandbox}/_sandbox/webhooks/emit", json=signal) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer
