"""Hostile or confused agent input gets a clear answer and never reaches a customer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from handoff.ratings import RATING_PREFIX
from handoff.settings import Settings
from shared.bus import Bus
from shared.events import HandoffClosed, HandoffRequested
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


async def test_hostile_agent_input_is_answered_and_never_relayed(
    bus: Bus,
    probe: Probe,
    settings_for: Callable[..., Settings],
    database_url: str,
    db_schema: str,
) -> None:
    async def agent_says(text: str, expected: str, **kw: object) -> None:
        count = len(probe.sends(AGENT))
        await bus.publish(inbound(AGENT, text, name="Agente", **kw))  # type: ignore[arg-type]
        await wait_for(lambda: len(probe.sends(AGENT)) > count, message=f"answer to {text!r}")
        answer = body(probe.sends(AGENT)[-1])
        assert expected in answer, answer

    async with running_handoff(settings_for()):
        await agent_says("hola, ¿alguien?", "No sé a qué caso va tu mensaje")
        await agent_says("#ZZZ9 hola cliente", "No encuentro el caso #ZZZ9")
        await agent_says("/fin ZZZ9", "No encuentro el caso #ZZZ9")
        await agent_says("/tomar", "Falta el código del caso")
        await agent_says("/borrar todo", "No conozco el comando /borrar")
        await agent_says("/fin", "No tenés un caso activo")
        await agent_says("/lista", "No hay casos abiertos")
        assert probe.sends(CUSTOMER) == []

        # A real case, taken and closed...
        await bus.publish(inbound(CUSTOMER, "quiero hablar con alguien"))
        notification = await probe.wait_text(AGENT, "quiere hablar")
        [requested] = await wait_for(lambda: probe.of(HandoffRequested))
        code = requested.case_code
        await agent_says("/lista", f"#{code} · Juan Pérez")
        await agent_says(f"/tomar {code.lower()}", f"Tomaste el caso #{code}")
        await agent_says(f"/tomar {code}", f"El caso #{code} ya es tuyo")
        await agent_says("/fin", f"Cerraste el caso #{code}")
        await probe.wait_text(CUSTOMER, "¿Cómo te atendimos?")  # the rating: one tap
        await bus.publish(inbound(CUSTOMER, "😀 Muy bien", reply_id=f"{RATING_PREFIX}{code}:3"))
        await probe.wait_text(CUSTOMER, "¡Gracias por contarnos!")
        [closed] = await wait_for(lambda: probe.of(HandoffClosed))
        assert closed.rating == 3
        seen_by_customer = len(probe.sends(CUSTOMER))

        # ...then commands and text for the closed case.
        await agent_says(f"/fin {code}", f"El caso #{code} ya está cerrado")
        await agent_says(f"#{code} ¿seguís ahí?", f"El caso #{code} ya está cerrado")
        await wait_mapped(database_url, db_schema, notification)
        await agent_says("te escribo citando", "ya está cerrado", quoting=wamid_of(notification))
        await agent_says("sin caso", "No sé a qué caso va tu mensaje")
        await agent_says(f"/tomar {code}", f"El caso #{code} ya está cerrado")
    assert len(probe.sends(CUSTOMER)) == seen_by_customer
    for send in probe.sends(CUSTOMER):
        assert "seguís ahí" not in body(send) and "citando" not in body(send)
