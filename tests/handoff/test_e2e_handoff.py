"""The issue's runbook end to end: sandbox phones -> gateway -> handoff -> sender -> sandbox.

Real processes (as `make run` starts them), real RabbitMQ and PostgreSQL. The agent's number
is the sandbox default (AGENT_WHATSAPP_NUMBER); it has never written, so its 24 h window is
closed and the notification arrives as the approved `handoff_agent_alert` template.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import SANDBOX_DEFAULTS
from tests.helpers import wait_for
from tests.system.harness import System

pytestmark = pytest.mark.integration

CUSTOMER = "+5491135722871"
AGENT = SANDBOX_DEFAULTS["AGENT_WHATSAPP_NUMBER"]
AUTH = {"Authorization": f"Bearer {SANDBOX_DEFAULTS['META_WA_ACCESS_TOKEN']}"}


def text_of(message: dict[str, Any]) -> str:
    body = message["body"]
    if message["type"] == "text":
        return str(body["text"]["body"])
    if message["type"] == "interactive":
        return str(body["interactive"]["body"]["text"])
    return str(message.get("template") or body)


class Phone:
    def __init__(self, system: System, number: str, name: str) -> None:
        self.system, self.number, self.name = system, number, name

    async def write(self, text: str, **extra: Any) -> None:
        await self._inbound(text=text, **extra)

    async def taps(self, message: dict[str, Any], title: str) -> None:
        """The phone taps the reply button ``title`` of ``message`` (Meta's ``button_reply``)."""
        buttons = message["body"]["interactive"]["action"]["buttons"]
        [reply] = [b["reply"] for b in buttons if b["reply"]["title"] == title]
        await self._inbound(button_reply=reply, context_id=message["wamid"])

    async def _inbound(self, **fields: Any) -> None:
        answer = await self.system.post_json(
            f"{self.system.url('sandbox')}/_sandbox/inbound",
            {"from": self.number, "name": self.name, **fields},
        )
        assert answer["gateway_status"] == 200

    async def sends_media(self, kind: str, data: bytes, mime_type: str, **extra: Any) -> str:
        """The phone sends a file; returns the media id Meta gave it (read from the webhook)."""
        media = {"data_base64": base64.b64encode(data).decode(), "mime_type": mime_type, **extra}
        sandbox = self.system.url("sandbox")
        answer = await self.system.post_json(
            f"{sandbox}/_sandbox/inbound", {"from": self.number, "name": self.name, kind: media}
        )
        assert answer["gateway_status"] == 200
        for delivery in (await self.system.get_json(f"{sandbox}/_sandbox/webhooks"))["webhooks"]:
            for entry in delivery["body"].get("entry", []):
                for change in entry.get("changes", []):
                    for message in change.get("value", {}).get("messages", []):
                        if message["id"] == answer["wamid"]:
                            return str(message[kind]["id"])
        raise AssertionError(f"no webhook for {answer['wamid']}")

    async def inbox(self) -> list[dict[str, Any]]:
        url = f"{self.system.url('sandbox')}/_sandbox/phones/{self.number}/messages"
        messages: list[dict[str, Any]] = (await self.system.get_json(url))["messages"]
        return messages

    async def receives(self, fragment: str, *, after: int = 0) -> dict[str, Any]:
        async def find() -> dict[str, Any] | None:
            return next((m for m in (await self.inbox())[after:] if fragment in text_of(m)), None)

        try:
            found: dict[str, Any] = await wait_for(find, timeout=30)
        except AssertionError:
            got = [text_of(m) for m in await self.inbox()]
            raise AssertionError(f"{self.number} never got {fragment!r}; got {got}") from None
        return found


MAILBOX = "casos@example.com"  # the profile's people: the transcript mail goes here


@pytest.fixture
async def mailing_system(
    rabbitmq_url: str, database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[System]:
    """The system on the default profile with ``notification_emails``: transcripts are mailed."""
    profiles = tmp_path / "profiles.yaml"
    profile = {"id": "default", "name": "Mensajero Demo", "notification_emails": [MAILBOX]}
    profiles.write_text(yaml.safe_dump({"profiles": [profile]}), "utf-8")
    system = System(unique, rabbitmq_url, database_url, tmp_path)
    system.extra_env["COMPANY_PROFILES_FILE"] = str(profiles)
    async with system:
        yield system


async def transcript_mail(system: System, code_fragment: str) -> dict[str, Any]:
    """The transcript mail moto's SES accepted for ``MAILBOX`` (its subject names the case)."""

    async def find() -> dict[str, Any] | None:
        data = await system.get_json(f"{system.url('ses')}/moto-api/data.json")
        for mail in data.get("ses", {}).get("Message", []):
            to = [a for group in mail["destinations"].values() for a in group]
            if MAILBOX in to and code_fragment in mail["subject"]:
                return dict(mail)
        return None

    found: dict[str, Any] = await wait_for(find, timeout=30, message="the transcript mail")
    return found


async def test_runbook_through_the_sandbox(mailing_system: System) -> None:
    system = mailing_system
    customer = Phone(system, CUSTOMER, "Juan Pérez")
    agent = Phone(system, AGENT, "Ana")

    await customer.write("quiero hablar con un humano")
    await customer.receives("le avisé a una persona")
    alert = await agent.receives("handoff_agent_alert")
    assert CUSTOMER in text_of(alert) and "Juan Pérez" in text_of(alert)

    # The agent answers by quoting the notification: that claims the case and relays.
    await agent.write("Hola Juan, soy Ana. ¿En qué te ayudo?", context_id=alert["wamid"])
    await customer.receives("Hola Juan, soy Ana")
    await agent.receives("Tomaste el caso")

    # Every service restarts mid-conversation (the sandbox plays Meta and stays up).
    for name in ("gateway", "sender", "handoff", "notifier"):
        await system.stop(name)
    for name in ("notifier", "sender", "handoff", "gateway"):
        await system.start(name)

    seen = len(await agent.inbox())
    await customer.write("Mi pedido no llegó")
    relayed = await agent.receives("Mi pedido no llegó", after=seen)
    assert "Juan Pérez" in text_of(relayed)

    # Media both ways, each a copy the sender downloaded from Meta and uploaded again.
    photo = b"\xff\xd8\xff\xe0" + os.urandom(64 * 1024)
    seen = len(await agent.inbox())
    sent_id = await customer.sends_media("image", photo, "image/jpeg", caption="así llegó la caja")
    got = (await agent.receives("así llegó la caja", after=seen))["body"]["image"]
    assert got["caption"].startswith("#") and "Juan Pérez" in got["caption"]
    assert got["id"] != sent_id and await media_bytes(system, got["id"]) == photo

    pdf = b"%PDF-1.4\n" + os.urandom(4096) + b"\n%%EOF\n"
    seen_by_customer = len(await customer.inbox())
    sent_id = await agent.sends_media(
        "document", pdf, "application/pdf", caption="tu comprobante", filename="comprobante.pdf"
    )
    got = (await customer.receives("tu comprobante", after=seen_by_customer))["body"]["document"]
    assert got["caption"] == "tu comprobante" and got["filename"] == "comprobante.pdf"
    assert got["id"] != sent_id and await media_bytes(system, got["id"]) == pdf

    seen_by_customer = len(await customer.inbox())
    await agent.write("/fin")
    await customer.receives("terminó", after=seen_by_customer)
    # The customer's one-tap rating, then back with the bot: writing again gets the menu.
    rating = await customer.receives("¿Cómo te atendimos?", after=seen_by_customer)
    assert rating["type"] == "interactive"
    await customer.taps(rating, "😀 Muy bien")
    await customer.receives("¡Gracias por contarnos!", after=seen_by_customer)
    seen_by_customer = len(await customer.inbox())
    await customer.write("Hola")
    menu = await customer.receives("asistente virtual", after=seen_by_customer)
    assert menu["type"] == "interactive"
    titles = [b["reply"]["title"] for b in menu["body"]["interactive"]["action"]["buttons"]]
    assert "Hablar con un humano" in titles
    metrics = await system.metrics("handoff")  # counted since the restart
    assert metrics['handoff_ended_total{reason="agent"}'] == 1.0
    assert metrics['handoff_relays_total{direction="to_agent"}'] == 2.0
    assert metrics['handoff_relays_total{direction="to_customer"}'] == 1.0
    assert metrics['handoff_csat_total{profile="default",score="3"}'] == 1.0
    mail = await transcript_mail(system, "Conversación del caso")
    assert "Calificación del cliente" in mail["body"] and "😀 Muy bien (3 de 3)" in mail["body"]


async def media_bytes(system: System, media_id: str) -> bytes:
    """A media id's bytes as anyone with the token gets them: its URL, then the download."""
    assert system.session is not None
    sandbox = system.url("sandbox")
    async with system.session.get(f"{sandbox}/v23.0/{media_id}", headers=AUTH) as response:
        assert response.status == 200, await response.text()
        url = (await response.json())["url"]
    async with system.session.get(url, headers=AUTH) as response:
        assert response.status == 200, await response.text()
        return await response.read()
