"""The issue's runbook end to end: sandbox phones -> gateway -> handoff -> sender -> sandbox.

Real processes (as `make run` starts them), real RabbitMQ and PostgreSQL. The agent's number
is the sandbox default (AGENT_WHATSAPP_NUMBER); it has never written, so its 24 h window is
closed and the notification arrives as the approved `handoff_agent_alert` template.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from shared.settings import SANDBOX_DEFAULTS
from tests.helpers import wait_for
from tests.system.harness import System
from tests.system.phones import Phone, text_of

pytestmark = pytest.mark.integration

CUSTOMER = "+5491135722871"
AGENT = SANDBOX_DEFAULTS["AGENT_WHATSAPP_NUMBER"]
AUTH = {"Authorization": f"Bearer {SANDBOX_DEFAULTS['META_WA_ACCESS_TOKEN']}"}


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
    [mail] = await wait_for(lambda: system.mails_to(MAILBOX), timeout=30, message="the transcript")
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
