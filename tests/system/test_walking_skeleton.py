"""One message through the whole loop: real processes, real RabbitMQ and PostgreSQL.

The sandbox posts a signed "Hola" webhook -> the gateway verifies and publishes -> handoff
answers with the greeting menu as a send command -> the sender calls the sandbox's Graph API ->
the sandbox records the message at the phone and posts signed sent/delivered/read webhooks ->
the gateway publishes them -> the sender counts them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import wait_for
from tests.system.harness import System

pytestmark = pytest.mark.integration

CUSTOMER = "+5491135722871"


def buttons_of(message: dict[str, Any]) -> list[str]:
    interactive = message["body"].get("interactive", {})
    return [b["reply"]["title"] for b in interactive.get("action", {}).get("buttons", [])]


async def test_hola_gets_the_greeting_menu_and_statuses_are_counted(system: System) -> None:
    answer = await system.post_json(
        f"{system.url('sandbox')}/_sandbox/inbound",
        {"from": CUSTOMER, "name": "Usuario", "text": "Hola"},
    )
    assert answer["gateway_status"] == 200

    async def greeting() -> dict[str, Any] | None:
        inbox = await system.get_json(
            f"{system.url('sandbox')}/_sandbox/phones/{CUSTOMER}/messages"
        )
        menus = [m for m in inbox["messages"] if m["type"] == "interactive"]
        return menus[0] if menus else None

    menu = await wait_for(greeting, timeout=30, message="the greeting menu at the phone")
    assert menu["body"]["interactive"]["type"] == "button"
    assert "Hablar con un humano" in buttons_of(menu)
    assert menu["body"]["to"].lstrip("+") == CUSTOMER.lstrip("+")

    async def counted() -> bool:
        metrics = ("sent", "delivered", "read")
        totals = [
            await system.metric_total("sender", f"whatsapp_messages_{m}_total") for m in metrics
        ]
        return totals == [1.0, 1.0, 1.0]

    await wait_for(counted, timeout=30, message="sent/delivered/read counted once each")
    assert await system.metric_total("sender", "whatsapp_messages_failed_total") == 0
    # The gateway logged the runbook's lines (written by a background thread every 50 ms).
    runbook = (
        "=== WEBHOOK WHATSAPP RECIBIDO ===",
        "✅ Firma de webhook válida",
        f"Mensaje recibido de {CUSTOMER} (Usuario): Hola",
    )
    await wait_for(
        lambda: all(line in system.tail("gateway", 400) for line in runbook),
        message="the runbook's lines in the gateway's log",
    )


async def test_service_without_required_variable_exits_2_naming_it(
    system_config: System,
) -> None:
    import asyncio
    import sys

    env = system_config.env("sender")
    env.pop("META_WA_ACCESS_TOKEN", None)
    env["MENSAJERO_ENV"] = "production"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sender", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "META_WA_ACCESS_TOKEN es requerido" in err.decode().splitlines()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/", "cannot reach RabbitMQ at amqp://"),
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/x", "cannot reach PostgreSQL at"),
    ],
)
async def test_service_with_unreachable_dependency_names_it(
    system_config: System, variable: str, value: str, named: str
) -> None:
    import asyncio
    import sys

    env = system_config.env("handoff")
    env[variable] = value
    env["STARTUP_TIMEOUT_SECONDS"] = "1"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "handoff", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert named in err.decode()
