"""Phone-less customers, identity changes, echoes and system messages through real RabbitMQ and
PostgreSQL (the sender played by the probe; the gateway's events published as it would)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from handoff.bootstrap import Adapters
from handoff.ratings import RATING_PREFIX
from handoff.settings import Settings
from shared.bus import Bus
from shared.events import (
    ButtonsContent,
    HandoffClosed,
    HandoffRequested,
    Identity,
    InboundMessage,
    SendMessage,
    TemplateContent,
)
from tests.handoff.support import (
    AGENT,
    CUSTOMER,
    Probe,
    body,
    echo,
    identity_changed,
    inbound,
    running_handoff,
    wait_mapped,
    wamid_of,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

BSUID = "AR.13491208655302741918"
ANA: dict[str, Any] = {"user_id": BSUID, "username": "ana", "name": "Ana"}  # no phone
NEW_PHONE = "+5491144445555"
NEW_BSUID = "AR.99991208655302741918"
OTHER = "+5491155550002"


def menus(probe: Probe, to: str) -> int:
    return sum(isinstance(s.content, ButtonsContent) for s in probe.sends(to))


async def test_a_phone_less_customer_is_answered_reaches_an_agent_and_comes_back(
    bus: Bus,
    probe: Probe,
    settings_for: Callable[..., Settings],
    database_url: str,
    db_schema: str,
) -> None:
    async with running_handoff(settings_for()):
        await bus.publish(inbound(None, "Hola", **ANA))
        [menu] = await probe.wait_sends(BSUID, 1)
        assert isinstance(menu.content, ButtonsContent)

        await bus.publish(inbound(AGENT, "/ayuda", name="Agente"))
        await probe.wait_text(AGENT, "/tomar")
        await bus.publish(inbound(None, "quiero hablar con un humano", **ANA))
        await probe.wait_text(BSUID, "le avisé a una persona")
        notification = await probe.wait_text(AGENT, "quiere hablar con una persona")
        [requested] = await wait_for(lambda: probe.of(HandoffRequested))
        code = requested.case_code
        assert f"#{code}: Ana (@ana)" in body(notification)
        assert isinstance(notification.fallback_template, TemplateContent)
        alert = notification.fallback_template.components[0]["parameters"][0]["text"]
        assert alert == f"#{code} Ana (@ana)"
        assert requested.customer == Identity(user_id=BSUID, name="Ana", username="ana")

        await wait_mapped(database_url, db_schema, notification)
        await bus.publish(inbound(AGENT, "Hola Ana, ¿qué pasó?", quoting=wamid_of(notification)))
        await probe.wait_text(BSUID, "Hola Ana, ¿qué pasó?")
        await bus.publish(inbound(None, "No me llegó el pedido", **ANA))
        relayed = await probe.wait_text(AGENT, "No me llegó el pedido")
        assert body(relayed).startswith(f"#{code} · Ana (@ana):")
        await bus.publish(inbound(AGENT, "/lista", name="Agente"))
        await probe.wait_text(AGENT, f"#{code} · Ana (@ana) · con vos")

        await bus.publish(inbound(AGENT, "/fin", name="Agente"))
        await probe.wait_text(BSUID, "terminó")
        await probe.wait_text(BSUID, "¿Cómo te atendimos?")  # the rating, at her BSUID
        await bus.publish(inbound(None, "😀 Muy bien", reply_id=f"{RATING_PREFIX}{code}:3", **ANA))
        await probe.wait_text(BSUID, "¡Gracias por contarnos!")
        [closed] = await wait_for(lambda: probe.of(HandoffClosed))
        assert (closed.customer.user_id, closed.customer.username) == (BSUID, "ana")
        assert closed.rating == 3
        await bus.publish(inbound(None, "Hola de nuevo", **ANA))  # back with the bot
        await wait_for(lambda: menus(probe, BSUID) == 3)  # the menu, the rating, the menu
        assert RATING_PREFIX not in str(probe.sends(BSUID)[-1].content)
    assert all(send.to_phone is None for send in probe.sends(BSUID))


async def test_an_identity_change_mid_case_keeps_the_case(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    async with running_handoff(settings_for()):
        await bus.publish(inbound(AGENT, "/ayuda", name="Agente"))
        await probe.wait_text(AGENT, "/tomar")
        await bus.publish(inbound(CUSTOMER, "necesito un asesor", user_id=BSUID))
        [requested] = await wait_for(lambda: probe.of(HandoffRequested))
        code = requested.case_code
        await bus.publish(inbound(AGENT, f"#{code} Hola, te atiendo yo", name="Agente"))
        await probe.wait_text(CUSTOMER, "te atiendo yo")

        before, current = (
            Identity(phone=CUSTOMER, user_id=BSUID),
            Identity(phone=NEW_PHONE, user_id=NEW_BSUID),
        )
        await bus.publish(identity_changed("user_changed_number", before, current))
        await probe.wait_text(AGENT, f"{CUSTOMER} → {NEW_PHONE}")
        await bus.publish(inbound(NEW_PHONE, "Te escribo del número nuevo", user_id=NEW_BSUID))
        relayed = await probe.wait_text(AGENT, "Te escribo del número nuevo")
        assert body(relayed).startswith(f"#{code} · Juan Pérez:")
        await bus.publish(inbound(AGENT, "Perfecto, sigo acá", name="Agente"))
        await probe.wait_text(NEW_PHONE, "Perfecto, sigo acá")

        await bus.publish(inbound(AGENT, "/fin", name="Agente"))
        await probe.wait_text(NEW_PHONE, "¿Cómo te atendimos?")  # the rating, at the new number
        tap = f"{RATING_PREFIX}{code}:2"
        await bus.publish(inbound(NEW_PHONE, "😐 Regular", user_id=NEW_BSUID, reply_id=tap))
        [closed] = await wait_for(lambda: probe.of(HandoffClosed))
    assert closed.rating == 2
    assert len(probe.of(HandoffRequested)) == 1
    assert (closed.customer.phone, closed.customer.user_id) == (NEW_PHONE, NEW_BSUID)
    notes = [line.text for line in closed.transcript if line.author == "system"]
    assert len(notes) == 1 and f"{CUSTOMER} → {NEW_PHONE}" in notes[0]
    assert not any(body(send) == "Perfecto, sigo acá" for send in probe.sends(CUSTOMER))


class Clock:
    """The real time, moved forward on request."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def test_an_echo_quiets_the_bot_for_that_customer_until_the_quiet_time_ends(
    bus: Bus,
    probe: Probe,
    settings_for: Callable[..., Settings],
    database_url: str,
    db_schema: str,
) -> None:
    clock = Clock()
    settings = settings_for(HANDOFF_ECHO_QUIET_SECONDS=600)
    async with running_handoff(settings, adapters=Adapters(clock=clock)):
        await bus.publish(echo(Identity(phone=CUSTOMER), "Hola Juan, te escribo yo"))
        await bus.publish(inbound(CUSTOMER, "Hola, gracias"))
        await bus.publish(inbound(OTHER, "Hola", name="Otra"))
        await probe.wait_sends(OTHER, 1)  # another customer: the bot answers
        await wait_for_line(database_url, db_schema, "Hola, gracias")

        clock.offset = timedelta(seconds=601)
        menu = await answer_to(bus, probe, inbound(CUSTOMER, "¿Hola?"))
    assert isinstance(menu.content, ButtonsContent)
    assert probe.sends(CUSTOMER) == [menu]  # "Hola, gracias" got nothing


async def answer_to(bus: Bus, probe: Probe, msg: InboundMessage) -> SendMessage:
    """Publish a customer's message and wait for handoff's answer to it.

    One customer's messages are handled in order, and what each handling publishes goes out
    before the next is handled: whatever an earlier message of theirs sent is in by then.
    """
    await bus.publish(msg)

    def answer() -> SendMessage | None:
        found = [s for s in probe.sends() if s.correlation_id == msg.event_id]
        return found[0] if found else None

    found: SendMessage = await wait_for(answer, message=f"an answer to {msg.text!r}")
    return found


async def wait_for_line(database_url: str, schema: str, text: str) -> None:
    """Wait until handoff has handled (and committed) the customer message ``text``."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:

        async def written() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM messages WHERE text = $1", text))

        await wait_for(written, message=f"the line {text!r}")
    finally:
        await conn.close()


async def test_a_system_message_does_not_trigger_the_bot(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    notice = {"body": "Cambió el código de seguridad", "type": "security"}
    async with running_handoff(settings_for()):
        first = await answer_to(bus, probe, inbound(CUSTOMER, "Hola"))
        await bus.publish(inbound(CUSTOMER, None, message_type="system", system=notice))
        second = await answer_to(bus, probe, inbound(CUSTOMER, "Hola otra vez"))
    assert probe.sends(CUSTOMER) == [first, second]  # nothing for the notice
    assert isinstance(second.content, ButtonsContent)
