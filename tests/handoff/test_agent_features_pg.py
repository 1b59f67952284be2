"""Issue 15's agent features through real RabbitMQ and PostgreSQL (the sender simulated by the
probe): transfers, pause, canned replies, the reply timeout (once, with two instances on one
schema) and the customer's rating (late, duplicated, counted)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from handoff.settings import Settings
from shared.bus import Bus
from shared.events import (
    ButtonsContent,
    HandoffClosed,
    HandoffUnattended,
    TemplateContent,
)
from shared.ops import REGISTRY_KEY
from tests.handoff.support import AGENT, AGENT2, CUSTOMER, Probe, body, inbound, running_handoff
from tests.handoff.test_concurrency import start_active_case
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def team_settings(settings_for: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    """Settings with two agents, Ana and Beto, on a profile with ``handoff`` options."""

    def build(handoff: dict[str, Any] | None = None, **extra: Any) -> Settings:
        options = {"agent_names": {AGENT: "Ana", AGENT2: "Beto"}, **(handoff or {})}
        profile = {"id": "acme", "name": "Acme", "settings": {"handoff": options}}
        path = tmp_path / "profiles.yaml"
        path.write_text(yaml.safe_dump({"profiles": [profile]}, allow_unicode=True), "utf-8")
        return settings_for(
            AGENT_WHATSAPP_NUMBER=f"{AGENT},{AGENT2}", COMPANY_PROFILES_FILE=str(path), **extra
        )

    return build


def sample(app: web.Application, name: str, **labels: str) -> float:
    return app[REGISTRY_KEY].get_sample_value(name, labels) or 0.0


async def agent_says(bus: Bus, probe: Probe, agent: str, text: str, expect: str) -> None:
    await bus.publish(inbound(agent, text, name="Agente"))
    await probe.wait_text(agent, expect)


async def test_transfer_alerts_the_new_agent_by_template_and_the_transcript_keeps_both(
    bus: Bus, probe: Probe, team_settings: Callable[..., Settings]
) -> None:
    async with running_handoff(team_settings()) as app:
        code = await start_active_case(bus, probe)
        await agent_says(bus, probe, AGENT, f"/pasar {code} beto", "Le pasaste el caso")
        await probe.wait_text(CUSTOMER, "Te paso con Beto")
        # Beto never wrote: his window is closed, so the alert template, whose button claims.
        # (The first alert was the case's, when the customer asked.)
        alerts = await probe.wait_sends(AGENT2, 2)
        assert all(isinstance(alert.content, TemplateContent) for alert in alerts)
        await bus.publish(
            inbound(AGENT2, "Atender", reply_id=f"tomar:{code}", reply_kind="template_button")
        )
        await probe.wait_text(AGENT2, "te pasó el caso")  # the briefing held for his window
        await probe.wait_text(AGENT2, f"El caso #{code} ya es tuyo")
        await bus.publish(inbound(AGENT2, "Sigo yo, Juan", name="Beto"))
        await probe.wait_text(CUSTOMER, "Sigo yo, Juan")

        await agent_says(bus, probe, AGENT2, "/fin", f"Cerraste el caso #{code}")
        await probe.wait_text(CUSTOMER, "¿Cómo te atendimos?")  # the transcript waits for it
        await bus.publish(inbound(CUSTOMER, "😐 Regular", reply_id=f"csat:{code}:2"))
        [closed] = await wait_for(lambda: probe.of(HandoffClosed))
        assert closed.rating == 2
        assert [h.agent_name for h in closed.handlers] == ["Ana", "Beto"]
        assert closed.agent_phone == AGENT2
        assert "[Ana le pasó el caso a Beto]" in [line.text for line in closed.transcript]
        assert sample(app, "handoff_transfers_total", reason="transfer") == 1


async def test_paused_agents_are_not_offered_cases(
    bus: Bus, probe: Probe, team_settings: Callable[..., Settings]
) -> None:
    async with running_handoff(team_settings()):
        await agent_says(bus, probe, AGENT, "/pausa", "estás en pausa")
        await agent_says(bus, probe, AGENT2, "/ayuda", "/pausa")
        await bus.publish(inbound(CUSTOMER, "quiero hablar con un humano"))
        await probe.wait_text(AGENT2, "quiere hablar con una persona")
        await probe.wait_text(CUSTOMER, "le avisé")
        assert not any("quiere hablar" in body(s) for s in probe.sends(AGENT))

        # Everybody paused: the customer is told, the profile mailed, the case closed.
        await bus.publish(inbound(CUSTOMER, "salir"))
        await probe.wait_text(CUSTOMER, "cerramos la conversación")
        await agent_says(bus, probe, AGENT2, "/pausa", "estás en pausa")
        await bus.publish(inbound(CUSTOMER, "quiero hablar con un humano"))
        await probe.wait_text(CUSTOMER, "no hay nadie disponible")
        [unattended] = await wait_for(lambda: probe.of(HandoffUnattended))
        assert unattended.reason == "no_agent"


async def test_canned_replies_list_and_fill_in(
    bus: Bus, probe: Probe, team_settings: Callable[..., Settings]
) -> None:
    canned = {"saludo": "Hola {name}, gracias por escribir a Acme.", "horario": "De 9 a 18."}
    async with running_handoff(team_settings({"canned_replies": canned})):
        await start_active_case(bus, probe)
        await agent_says(bus, probe, AGENT, "/r", "• saludo: Hola {name}")
        await bus.publish(inbound(AGENT, "/r saludo", name="Agente"))
        await probe.wait_text(CUSTOMER, "Hola Juan Pérez, gracias por escribir a Acme.")
        await agent_says(bus, probe, AGENT, "/r otra", "No hay una respuesta guardada «otra»")


async def test_the_reply_timeout_fires_once_with_two_instances(
    bus: Bus, probe: Probe, team_settings: Callable[..., Settings]
) -> None:
    settings = team_settings(HANDOFF_AGENT_REPLY_TIMEOUT_SECONDS=0.5)
    async with running_handoff(settings) as a, running_handoff(settings) as b:
        await agent_says(bus, probe, AGENT2, "/ayuda", "/pasar")
        code = await start_active_case(bus, probe)
        await bus.publish(inbound(CUSTOMER, "¿hay alguien?"))
        await probe.wait_text(AGENT, "¿hay alguien?")
        await probe.wait_text(AGENT2, f"#{code} · Juan Pérez")  # the offer
        await probe.wait_text(AGENT, "se lo ofrecí a los otros agentes")

        await bus.publish(inbound(AGENT2, f"/tomar {code} Perdón la demora", name="Beto"))
        await probe.wait_text(CUSTOMER, "Perdón la demora")
        await probe.wait_text(AGENT, "Beto tomó el caso")
        # A round trip after it: the customer now reaches Beto.
        await bus.publish(inbound(CUSTOMER, "gracias Beto"))
        await probe.wait_text(AGENT2, "gracias Beto")
        fired = sum(sample(app, "handoff_timers_fired_total", kind="reply") for app in (a, b))
        taken = sum(
            sample(app, "handoff_transfers_total", reason="reply_timeout") for app in (a, b)
        )
    assert fired == 1 and taken == 1
    offers = [s for s in probe.sends(AGENT2) if "espera respuesta de Ana" in body(s)]
    assert len(offers) == 1


async def test_the_rating_counts_once_and_a_late_one_not_at_all(
    bus: Bus, probe: Probe, team_settings: Callable[..., Settings]
) -> None:
    settings = team_settings(HANDOFF_RATING_TIMEOUT_SECONDS=1.0)  # the rating is on by default
    async with running_handoff(settings) as app:
        code = await start_active_case(bus, probe)
        await agent_says(bus, probe, AGENT, "/fin", f"Cerraste el caso #{code}")
        rating = await wait_for(
            lambda: next(
                (
                    s
                    for s in probe.sends(CUSTOMER)
                    if isinstance(s.content, ButtonsContent)
                    and s.content.buttons[0].id.startswith("csat:")
                ),
                None,
            )
        )
        assert [b.title for b in rating.content.buttons] == ["😀 Muy bien", "😐 Regular", "😞 Mal"]
        tap = f"csat:{code}:3"
        await bus.publish(inbound(CUSTOMER, "😀 Muy bien", reply_id=tap))
        await probe.wait_text(CUSTOMER, "¡Gracias por contarnos!")
        await bus.publish(inbound(CUSTOMER, "😀 Muy bien", reply_id=tap))  # tapped twice
        await probe.wait_text(CUSTOMER, "Ya recibimos tu calificación")
        [closed] = await wait_for(lambda: probe.of(HandoffClosed))
        assert (closed.rating, closed.rating_label) == (3, "😀 Muy bien")
        assert sample(app, "handoff_csat_total", profile="acme", score="3") == 1

        # The next case's customer answers after the deadline: the transcript went without it.
        second = await start_active_case(bus, probe)
        await agent_says(bus, probe, AGENT, "/fin", f"Cerraste el caso #{second}")
        await wait_for(lambda: len(probe.of(HandoffClosed)) == 2, message="the deadline")
        assert probe.of(HandoffClosed)[1].rating is None
        await bus.publish(inbound(CUSTOMER, "😞 Mal", reply_id=f"csat:{second}:1"))
        await probe.wait_text(CUSTOMER, "esa encuesta ya cerró")
        assert sample(app, "handoff_csat_total", profile="acme", score="1") == 0
        assert sample(app, "handoff_csat_total", profile="acme", score="3") == 1
        assert len(probe.of(HandoffClosed)) == 2
