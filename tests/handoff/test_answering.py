"""Answering is enough, through a running handoff on real RabbitMQ and PostgreSQL (issue 15):
a quote of an alert claims its case; the first of two agents answering at once wins; a kept
draft survives a restart and expires once across two replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest
from aiohttp import web

from handoff.settings import Settings
from shared.bus import Bus
from shared.events import (
    HandoffClaimed,
    HandoffRequested,
    InboundMessage,
    ListContent,
    SendMessage,
)
from shared.ops import REGISTRY_KEY
from tests.handoff.support import (
    AGENT,
    AGENT2,
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

OTHER = "+5491155550002"


async def open_window(bus: Bus, probe: Probe, agent: str = AGENT) -> None:
    await bus.publish(inbound(agent, "/ayuda", name="Agente"))
    await probe.wait_text(agent, "/tomar")


async def two_waiting(bus: Bus, probe: Probe) -> dict[str, str]:
    """Two customers ask for a person: their case codes by phone."""
    await bus.publish(inbound(CUSTOMER, "quiero un humano", name="Juan Pérez"))
    await bus.publish(inbound(OTHER, "necesito una persona", name="Marta Gómez"))
    await wait_for(lambda: len(probe.of(HandoffRequested)) == 2, message="two cases")
    return {r.customer.phone: r.case_code for r in probe.of(HandoffRequested)}


def choice_list(send: SendMessage) -> ListContent:
    assert isinstance(send.content, ListContent), send.content
    return send.content


def tap(code: str, agent: str = AGENT) -> InboundMessage:
    """The agent taps ``code``'s row of the "which case?" list."""
    return inbound(
        agent, f"#{code}", name="Agente", reply_id=f"caso:{code}", reply_kind="list_reply"
    )


async def test_quoting_the_alert_of_one_of_two_waiting_cases_claims_it(
    bus: Bus,
    probe: Probe,
    settings_for: Callable[..., Settings],
    database_url: str,
    db_schema: str,
) -> None:
    async with running_handoff(settings_for()):
        await open_window(bus, probe)
        codes = await two_waiting(bus, probe)
        alert = await probe.wait_text(AGENT, f"Caso #{codes[OTHER]}")
        await wait_mapped(database_url, db_schema, alert)
        await bus.publish(inbound(AGENT, "Hola Marta", name="Agente", quoting=wamid_of(alert)))
        await probe.wait_text(OTHER, "Hola Marta")
        await probe.wait_text(AGENT, f"Tomaste el caso #{codes[OTHER]}")
        [claimed] = await wait_for(lambda: probe.of(HandoffClaimed))
    assert claimed.case_code == codes[OTHER] and claimed.agent_phone == AGENT
    assert not any("Hola Marta" in body(s) for s in probe.sends(CUSTOMER))


async def test_two_agents_answering_the_one_waiting_case_at_once_one_wins(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(AGENT_WHATSAPP_NUMBER=f"{AGENT},{AGENT2}")
    async with running_handoff(settings), running_handoff(settings):
        for agent in (AGENT, AGENT2):
            await open_window(bus, probe, agent)
        await bus.publish(inbound(CUSTOMER, "quiero hablar con una persona"))
        await probe.wait_text(AGENT, "quiere hablar")
        await probe.wait_text(AGENT2, "quiere hablar")
        await asyncio.gather(
            bus.publish(inbound(AGENT, "Hola, soy Ana", name="Ana")),
            bus.publish(inbound(AGENT2, "Hola, soy Beto", name="Beto")),
        )
        [claimed] = await wait_for(lambda: probe.of(HandoffClaimed))
        winner, loser = (AGENT, AGENT2) if claimed.agent_phone == AGENT else (AGENT2, AGENT)
        await probe.wait_text(winner, "Tomaste el caso")
        await probe.wait_text(loser, "no lo envié")
        words = {AGENT: "Hola, soy Ana", AGENT2: "Hola, soy Beto"}
        await probe.wait_text(CUSTOMER, words[winner])
        # A round trip after both: nothing more is coming for the customer.
        await open_window(bus, probe, loser)
    assert len(probe.of(HandoffClaimed)) == 1
    assert not any(words[loser] in body(s) for s in probe.sends(CUSTOMER))


async def test_a_kept_draft_survives_a_restart_and_reaches_the_tapped_case(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    async with running_handoff(settings):
        await open_window(bus, probe)
        codes = await two_waiting(bus, probe)
        await bus.publish(inbound(AGENT, "Hola, soy Ana", name="Agente"))
        asked = await probe.wait_text(AGENT, "¿Para qué caso es tu mensaje?")
    rows = {row.id for row in choice_list(asked).sections[0].rows}
    assert rows == {f"caso:{codes[CUSTOMER]}", f"caso:{codes[OTHER]}"}
    assert not any("Hola, soy Ana" in body(s) for s in probe.sends(OTHER) + probe.sends(CUSTOMER))
    # Another instance: what the agent wrote is in PostgreSQL, not in the one that stopped.
    async with running_handoff(settings):
        await bus.publish(tap(codes[OTHER]))
        await probe.wait_text(OTHER, "Hola, soy Ana")
        await probe.wait_text(AGENT, f"Tomaste el caso #{codes[OTHER]}")
    assert not any("Hola, soy Ana" in body(s) for s in probe.sends(CUSTOMER))


def fired(app: web.Application) -> float:
    value = app[REGISTRY_KEY].get_sample_value("handoff_timers_fired_total", {"kind": "draft"})
    return value or 0.0


async def test_an_unchosen_draft_expires_once_across_two_replicas(
    bus: Bus,
    probe: Probe,
    settings_for: Callable[..., Settings],
    database_url: str,
    db_schema: str,
) -> None:
    settings = settings_for(HANDOFF_DRAFT_TTL_SECONDS=0.5)
    async with running_handoff(settings) as first, running_handoff(settings) as second:
        await open_window(bus, probe)
        await two_waiting(bus, probe)
        await bus.publish(inbound(AGENT, "Hola, soy Ana", name="Agente"))
        await probe.wait_text(AGENT, "no envié tu mensaje: «Hola, soy Ana»")
        # A round trip after it, while both replicas keep polling their timers.
        await bus.publish(inbound(AGENT, "/lista", name="Agente"))
        await probe.wait_text(AGENT, "Casos abiertos")
        await wait_for(lambda: fired(first) + fired(second) == 1, message="one firing")
    notes = [s for s in probe.sends(AGENT) if "no envié tu mensaje" in body(s)]
    assert len(notes) == 1
    conn = await asyncpg.connect(database_url, server_settings={"search_path": db_schema})
    try:
        assert await conn.fetchval("SELECT count(*) FROM drafts") == 0
    finally:
        await conn.close()
