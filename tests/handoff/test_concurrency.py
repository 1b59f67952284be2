"""Two handoff instances at once: order, duplicates, claim races, timers, restarts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from aiohttp import web

from handoff.settings import Settings
from shared.bus import Bus
from shared.events import (
    HandoffClaimed,
    HandoffRequested,
    HandoffUnattended,
    InboundMessage,
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
)
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def sample(app: web.Application, name: str, **labels: str) -> float:
    return app[REGISTRY_KEY].get_sample_value(name, labels) or 0.0


async def start_active_case(bus: Bus, probe: Probe, agent: str = AGENT) -> str:
    """Agent window open, customer asks for a human, agent takes the case with #code."""
    await bus.publish(inbound(agent, "/ayuda", name="Agente"))
    await probe.wait_text(agent, "/tomar")
    before = len(probe.of(HandoffRequested))
    await bus.publish(inbound(CUSTOMER, "necesito un asesor"))
    await wait_for(lambda: len(probe.of(HandoffRequested)) > before)
    code: str = probe.of(HandoffRequested)[-1].case_code
    await bus.publish(inbound(agent, f"#{code} Hola, te atiendo yo", name="Agente"))
    await probe.wait_text(CUSTOMER, "te atiendo yo")
    return code


def relayed_numbers(probe: Probe) -> list[int]:
    found = []
    for send in probe.sends(AGENT):
        match = re.search(r"mensaje (\d+)$", body(send))
        if match:
            found.append(int(match.group(1)))
    return found


async def test_two_instances_keep_a_customers_order_and_fail_over(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    async with running_handoff(settings) as first:
        async with running_handoff(settings) as second:
            await start_active_case(bus, probe)
            for n in range(15):
                await bus.publish(inbound(CUSTOMER, f"mensaje {n}"))
            await wait_for(lambda: len(relayed_numbers(probe)) == 15, message="15 relays")
            # Single active consumer: one instance took them all, the other stood by.
            await wait_for(
                lambda: (
                    sum(
                        sample(app, "handoff_relays_total", direction="to_agent")
                        for app in (first, second)
                    )
                    == 15
                )
            )
            counts = sorted(
                sample(app, "handoff_relays_total", direction="to_agent") for app in (first, second)
            )
            assert counts == [0.0, 15.0]
            active, standby = (
                (first, second)
                if sample(first, "handoff_relays_total", direction="to_agent")
                else (second, first)
            )
        # `second` has stopped; if it was the active one, `first` takes over.
        for n in range(15, 30):
            await bus.publish(inbound(CUSTOMER, f"mensaje {n}"))
        await wait_for(lambda: len(relayed_numbers(probe)) == 30, message="30 relays")
    assert relayed_numbers(probe) == list(range(30))
    assert active is not standby


async def test_a_duplicated_inbound_event_is_relayed_once(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    async with running_handoff(settings), running_handoff(settings):
        await start_active_case(bus, probe)
        message = inbound(CUSTOMER, "mensaje 1")
        duplicate = InboundMessage.model_validate(message.model_dump())
        await bus.publish(message)
        await bus.publish(duplicate)
        await bus.publish(message)
        await bus.publish(inbound(CUSTOMER, "mensaje 2"))
        await wait_for(lambda: 2 in relayed_numbers(probe), message="the marker")
    assert relayed_numbers(probe) == [1, 2]


async def test_two_agents_claiming_the_same_case_exactly_one_wins(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(AGENT_WHATSAPP_NUMBER=f"{AGENT},{AGENT2}")
    async with running_handoff(settings), running_handoff(settings):
        for agent in (AGENT, AGENT2):
            await bus.publish(inbound(agent, "/ayuda", name="Agente"))
            await probe.wait_text(agent, "/tomar")
        await bus.publish(inbound(CUSTOMER, "quiero hablar con una persona"))
        await probe.wait_text(AGENT, "quiere hablar")
        await probe.wait_text(AGENT2, "quiere hablar")  # every free agent is notified
        [requested] = probe.of(HandoffRequested)
        code = requested.case_code
        await asyncio.gather(
            bus.publish(inbound(AGENT, f"/tomar {code}", name="A")),
            bus.publish(inbound(AGENT2, f"/tomar {code}", name="B")),
        )

        def outcomes() -> list[str]:
            said = [body(s) for s in probe.sends(AGENT) + probe.sends(AGENT2)]
            return [t for t in said if "Tomaste" in t or "otro agente" in t]

        try:
            await wait_for(lambda: len(outcomes()) == 2, message="both agents answered")
        except AssertionError as error:
            raise AssertionError(f"{error}: {[body(s) for s in probe.sends()]}") from None
        claims = probe.of(HandoffClaimed)
    assert len(claims) == 1
    assert sorted("Tomaste" in t for t in outcomes()) == [False, True]
    winner = claims[0].agent_phone
    loser = AGENT2 if winner == AGENT else AGENT
    assert any("otro agente" in body(s) for s in probe.sends(loser))


async def test_a_queue_timer_fires_once_with_two_instances(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(HANDOFF_QUEUE_TIMEOUT_SECONDS=0.3)
    async with running_handoff(settings) as a, running_handoff(settings) as b:
        await bus.publish(inbound(CUSTOMER, "humano por favor"))
        await probe.wait_text(CUSTOMER, "nadie pudo tomar tu consulta")
        [unattended] = await wait_for(lambda: probe.of(HandoffUnattended))
        assert unattended.reason == "timeout"
        # A round trip after it: the customer is back with the bot.
        await bus.publish(inbound(CUSTOMER, "Hola"))
        await wait_for(lambda: len(probe.sends(CUSTOMER)) >= 4, message="menu again")
        fired = sum(sample(app, "handoff_timers_fired_total", kind="queue") for app in (a, b))
    assert fired == 1
    assert len(probe.of(HandoffUnattended)) == 1
    timeouts = [s for s in probe.sends(CUSTOMER) if "nadie pudo" in body(s)]
    assert len(timeouts) == 1


async def test_timers_and_states_survive_a_restart(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(HANDOFF_QUEUE_TIMEOUT_SECONDS=1.0, HANDOFF_IDLE_TIMEOUT_SECONDS=1.5)
    async with running_handoff(settings):
        await bus.publish(inbound(CUSTOMER, "quiero un humano", name="Cliente Uno"))
        await probe.wait_sends(AGENT, 1)
    # Stopped before the queue timer was due; a new instance fires it.
    async with running_handoff(settings):
        await probe.wait_text(CUSTOMER, "nadie pudo tomar tu consulta")
        assert len(probe.of(HandoffUnattended)) == 1

        code = await start_active_case(bus, probe)
    # An active conversation survives too: relays, and the idle timer closes it.
    async with running_handoff(settings):
        await bus.publish(inbound(CUSTOMER, "sigo acá"))
        await probe.wait_text(AGENT, "sigo acá")
        await probe.wait_text(CUSTOMER, "falta de actividad", timeout=15)
        await probe.wait_text(AGENT, f"El caso #{code} se cerró por falta de actividad")
