"""Answering is enough (issue 15), through the sandbox phones: sandbox -> gateway -> handoff ->
sender -> sandbox, real processes, real RabbitMQ and PostgreSQL.

The agent gets the alert and simply writes back; with two cases waiting they get a list, tap a
case, and what they wrote reaches that customer.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.handoff.test_e2e_handoff import AGENT, CUSTOMER
from tests.system.harness import System
from tests.system.phones import Phone, text_of

pytestmark = pytest.mark.integration

OTHER = "+5491135722872"


def rows(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a list message a phone received."""
    assert message["type"] == "interactive", message
    interactive = message["body"]["interactive"]
    assert interactive["type"] == "list", interactive
    return [row for section in interactive["action"]["sections"] for row in section["rows"]]


async def taps(system: System, phone: Phone, row: dict[str, Any]) -> None:
    """``phone`` taps ``row`` of a list it received (Meta's ``list_reply``)."""
    tapped = {"id": row["id"], "title": row["title"]}
    answer = await system.post_json(
        f"{system.url('sandbox')}/_sandbox/inbound",
        {"from": phone.number, "name": phone.name, "list_reply": tapped},
    )
    assert answer["gateway_status"] == 200


async def test_the_agent_gets_the_alert_and_simply_writes_back(system: System) -> None:
    customer = Phone(system, CUSTOMER, "Juan Pérez")
    agent = Phone(system, AGENT, "Ana")

    await customer.write("quiero hablar con un humano")
    await customer.receives("le avisé a una persona")
    await agent.receives("handoff_agent_alert")

    seen = len(await customer.inbox())
    await agent.write("Hola Juan, soy Ana. ¿En qué te ayudo?")  # no quote, no command
    answer = await customer.receives("Hola Juan, soy Ana", after=seen)
    assert answer["type"] == "text"
    await agent.receives("Tomaste el caso")
    # The conversation goes on both ways.
    seen = len(await agent.inbox())
    await customer.write("Mi pedido no llegó")
    await agent.receives("Mi pedido no llegó", after=seen)


async def test_with_two_cases_waiting_the_agent_taps_one_and_their_words_reach_it(
    system: System,
) -> None:
    juan = Phone(system, CUSTOMER, "Juan Pérez")
    marta = Phone(system, OTHER, "Marta Gómez")
    agent = Phone(system, AGENT, "Ana")

    await juan.write("quiero hablar con un humano")
    await juan.receives("le avisé a una persona")
    await marta.write("necesito hablar con una persona")
    await marta.receives("le avisé a una persona")

    seen = len(await agent.inbox())
    await agent.write("Hola, soy Ana")
    asked = await agent.receives("¿Para qué caso es tu mensaje?", after=seen)
    offered = rows(asked)
    assert len(offered) == 2
    row = next(r for r in offered if "Marta Gómez" in r["title"])
    assert OTHER in row["description"]

    seen = len(await marta.inbox())
    await taps(system, agent, row)
    kept = await marta.receives("Hola, soy Ana", after=seen)
    assert kept["type"] == "text"
    await agent.receives("Tomaste el caso")
    assert not any("Hola, soy Ana" in text_of(m) for m in await juan.inbox())
