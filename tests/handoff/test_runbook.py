"""The runbook scenario through real RabbitMQ and PostgreSQL (sender simulated by the probe)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from handoff.ratings import RATING_PREFIX
from handoff.settings import Settings
from shared.bus import Bus
from shared.events import (
    ButtonsContent,
    HandoffClaimed,
    HandoffClosed,
    HandoffRequested,
    TemplateContent,
    TextContent,
)
from shared.ops import REGISTRY_KEY
from tests.handoff.support import (
    AGENT,
    CUSTOMER,
    Probe,
    body,
    inbound,
    running_handoff,
    wait_mapped,
    wamid_of,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


async def test_runbook_customer_reaches_a_human_and_comes_back_to_the_bot(
    bus: Bus,
    probe: Probe,
    settings_for: Callable[..., Settings],
    database_url: str,
    db_schema: str,
) -> None:
    async with running_handoff(settings_for()) as app:
        # The agent has written to the business before: their 24 h window is open.
        await bus.publish(inbound(AGENT, "/ayuda", name="Agente"))
        await probe.wait_text(AGENT, "/tomar")

        await bus.publish(inbound(CUSTOMER, "quiero hablar con un humano"))
        await probe.wait_text(CUSTOMER, "le avisé a una persona")
        notification = await probe.wait_text(AGENT, "quiere hablar con una persona")
        [requested] = await wait_for(lambda: probe.of(HandoffRequested))
        code = requested.case_code
        text = body(notification)
        for expected in (f"#{code}", "Juan Pérez", CUSTOMER, "quiero hablar con un humano"):
            assert expected in text
        assert "alcanza con escribir tu respuesta" in text  # how to answer
        assert isinstance(notification.fallback_template, TemplateContent)

        await wait_mapped(database_url, db_schema, notification)
        answer = "Hola Juan, soy Ana. ¿En qué te ayudo?"
        await bus.publish(inbound(AGENT, answer, name="Agente", quoting=wamid_of(notification)))
        relayed = await probe.wait_text(CUSTOMER, answer)
        assert isinstance(relayed.content, TextContent)
        assert relayed.content.body == answer  # the business's words, no header
        assert relayed.fallback_template is not None
        [claimed] = await wait_for(lambda: probe.of(HandoffClaimed))
        assert claimed.agent_phone == AGENT and claimed.case_code == code

        await bus.publish(inbound(CUSTOMER, "Mi pedido no llegó"))
        to_agent = await probe.wait_text(AGENT, "Mi pedido no llegó")
        assert body(to_agent).startswith(f"#{code} · Juan Pérez")

        await bus.publish(inbound(AGENT, "/fin", name="Agente"))
        await probe.wait_text(CUSTOMER, "terminó")
        await probe.wait_text(AGENT, f"Cerraste el caso #{code}")
        # The customer's one-tap rating; the transcript waits for the answer.
        rating = await probe.wait_text(CUSTOMER, "¿Cómo te atendimos?")
        assert isinstance(rating.content, ButtonsContent)
        tap = rating.content.buttons[0]
        assert tap.id == f"{RATING_PREFIX}{code}:3"
        assert probe.of(HandoffClosed) == []
        await bus.publish(inbound(CUSTOMER, tap.title, reply_id=tap.id))
        await probe.wait_text(CUSTOMER, "¡Gracias por contarnos!")
        [closed] = await wait_for(lambda: probe.of(HandoffClosed))
        assert closed.end_reason == "agent"
        assert (closed.rating, closed.rating_label) == (3, "😀 Muy bien")
        authors = [line.author for line in closed.transcript]
        assert authors == ["customer", "agent", "customer"]

        registry = app[REGISTRY_KEY]
        csat_labels = {"profile": "default", "score": "3"}
        # Counted once the tap's events (the thanks, handoff.closed) were confirmed: just after
        # the probe may have them. The close's count came with /fin, earlier.
        await wait_for(lambda: registry.get_sample_value("handoff_csat_total", csat_labels) == 1)
        assert registry.get_sample_value("handoff_requested_total", {"trigger": "phrase"}) == 1
        assert registry.get_sample_value("handoff_ended_total", {"reason": "agent"}) == 1
        assert registry.get_sample_value("handoff_wait_seconds_count") == 1
        assert registry.get_sample_value("handoff_first_response_seconds_count") == 1
        relays = {
            d: registry.get_sample_value("handoff_relays_total", {"direction": d})
            for d in ("to_agent", "to_customer")
        }
        assert relays == {"to_agent": 1, "to_customer": 1}
        assert registry.get_sample_value("handoff_csat_total", csat_labels) == 1

        # Back with the bot: "Hola" gets the menu again, nothing goes to the agent.
        before = len(probe.sends(AGENT))
        menus = sum(isinstance(s.content, ButtonsContent) for s in probe.sends(CUSTOMER))
        await bus.publish(inbound(CUSTOMER, "Hola"))
        await wait_for(
            lambda: (
                sum(isinstance(s.content, ButtonsContent) for s in probe.sends(CUSTOMER))
                == menus + 1
            )
        )
        menu = probe.sends(CUSTOMER)[-1].content
        assert isinstance(menu, ButtonsContent) and RATING_PREFIX not in str(menu)  # the menu
        assert len(probe.sends(AGENT)) == before


async def test_agent_outside_window_gets_template_whose_button_claims(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    async with running_handoff(settings_for()):
        await bus.publish(inbound(CUSTOMER, "Hablar con un humano", reply_id="humano"))
        [alert] = await probe.wait_sends(AGENT, 1)
        [requested] = await wait_for(lambda: probe.of(HandoffRequested))
        assert requested.trigger == "button"
        assert isinstance(alert.content, TemplateContent)
        assert alert.content.name == "handoff_agent_alert"
        button = alert.content.components[1]
        payload = button["parameters"][0]["payload"]
        assert payload == f"tomar:{requested.case_code}"

        await bus.publish(
            inbound(AGENT, "Atender", name="Agente", reply_id=payload, reply_kind="template_button")
        )
        await probe.wait_text(AGENT, f"Tomaste el caso #{requested.case_code}")
        await probe.wait_text(CUSTOMER, "soy del equipo")
        await wait_for(lambda: probe.of(HandoffClaimed))


async def test_a_quote_that_arrives_before_the_senders_answer_is_retried(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    probe.accept = False  # the sender has not reported the wamids yet
    async with running_handoff(settings_for()):
        await bus.publish(inbound(AGENT, "/ayuda", name="Agente"))
        await probe.wait_text(AGENT, "/tomar")
        await bus.publish(inbound(CUSTOMER, "quiero hablar con un humano"))
        notification = await probe.wait_text(AGENT, "quiere hablar con una persona")
        await bus.publish(
            inbound(AGENT, "Hola, te atiendo", name="Agente", quoting=wamid_of(notification))
        )
        # Now the sender's answer arrives; the retried quote finds its case.
        from shared.events import MessageSent
        from tests.handoff.support import PHONE_NUMBER_ID

        await bus.publish(
            MessageSent(
                command_id=notification.event_id,
                wamid=wamid_of(notification),
                to=AGENT,
                phone_number_id=PHONE_NUMBER_ID,
                kind="text",
            )
        )
        relayed = await probe.wait_text(CUSTOMER, "Hola, te atiendo", timeout=15)
    assert relayed.content == TextContent(body="Hola, te atiendo")
    assert not any("No sé a qué caso" in body(s) for s in probe.sends(AGENT))
