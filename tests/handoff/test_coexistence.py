"""Echoes of the WhatsApp Business app (coexistence): the use cases on the in-memory repository."""

from __future__ import annotations

import pytest

from handoff.config import HandoffConfig
from handoff.settings import Settings
from shared.events import ButtonsContent, HandoffClosed, Identity
from shared.profiles import CompanyProfile, ProfileError, Profiles
from tests.handoff.support import AGENT, CUSTOMER, body
from tests.handoff.world import World

OTHER = "+5491155550002"
BSUID = "AR.13491208655302741918"


def menus(world: World, to: str) -> int:
    return sum(isinstance(s.content, ButtonsContent) for s in world.sends(to))


async def test_an_echo_quiets_the_bot_for_that_customer_only_then_it_answers_again() -> None:
    world = World(echo_quiet=600)
    await world.says(CUSTOMER, "Hola")
    assert await world.echoes(Identity(phone=CUSTOMER), "Hola Juan, te escribo yo") == []
    world.clock.advance(minutes=9)
    assert await world.says(CUSTOMER, "dale, gracias") == []  # a person is on it
    assert await world.says(CUSTOMER, "quiero un humano") == []  # no case either
    await world.says(OTHER, "Hola", name="Otra")  # another customer: the bot as ever
    assert menus(world, OTHER) == 1

    world.clock.advance(minutes=1)
    await world.says(CUSTOMER, "Hola de nuevo")
    assert menus(world, CUSTOMER) == 2


async def test_every_echo_starts_the_quiet_time_again() -> None:
    world = World(echo_quiet=600)
    await world.echoes(Identity(phone=CUSTOMER), "primero")
    world.clock.advance(minutes=8)
    await world.echoes(Identity(phone=CUSTOMER), "segundo")
    world.clock.advance(minutes=8)
    assert await world.says(CUSTOMER, "Hola") == []
    world.clock.advance(minutes=3)
    assert menus(world, CUSTOMER) == 0
    await world.says(CUSTOMER, "Hola")
    assert menus(world, CUSTOMER) == 1


async def test_the_profile_sets_its_quiet_time_and_zero_turns_it_off() -> None:
    profile = CompanyProfile(settings={"handoff": {"echo_quiet_seconds": 0}})
    world = World(profile=profile, echo_quiet=600)
    await world.echoes(Identity(phone=CUSTOMER), "te escribo desde la app")
    await world.says(CUSTOMER, "Hola")
    assert menus(world, CUSTOMER) == 1


def test_a_bad_quiet_time_is_named_at_start() -> None:
    settings = Settings(AGENT_WHATSAPP_NUMBER=AGENT)
    bad = CompanyProfile(id="tienda", settings={"handoff": {"echo_quiet_seconds": -5}})
    with pytest.raises(ProfileError, match=r"tienda: settings\.handoff\.echo_quiet_seconds"):
        HandoffConfig.from_settings(settings, Profiles(profiles=[bad]))


async def test_an_echo_in_an_active_case_is_in_the_transcript_and_the_agent_is_told() -> None:
    world = World()
    code = await world.active_case(phone=None, user_id=BSUID, username="ana", name="Ana")
    events = await world.echoes(Identity(user_id=BSUID), "Ana, ya te mandé el comprobante")
    [told] = world.sends(AGENT, events)
    assert body(told) == (
        f"#{code} · Le respondieron a Ana (@ana) desde la app de WhatsApp Business: "
        "Ana, ya te mandé el comprobante"
    )
    assert not world.sends(BSUID, events)  # the customer has it already: nothing sent twice
    await world.says(AGENT, "/fin", name="Agente")
    await world.rating_expires(code)  # the transcript goes at the rating's deadline
    [closed] = world.of(HandoffClosed)
    texts = [(line.author, line.text) for line in closed.transcript]
    assert (
        "agent",
        "[desde la app de WhatsApp Business] Ana, ya te mandé el comprobante",
    ) in texts


async def test_an_echo_to_someone_new_quiets_the_bot_for_their_answer() -> None:
    world = World()
    await world.echoes(Identity(phone=CUSTOMER, user_id=BSUID), "Hola, ¿pudiste pasar?")
    assert await world.says(CUSTOMER, "sí, gracias", user_id=BSUID) == []
    assert len(world.repo.conversations) == 1


async def test_an_echo_to_an_agents_number_changes_nothing() -> None:
    world = World()
    assert await world.echoes(Identity(phone=AGENT), "¿venís mañana?") == []
    assert world.repo.conversations == {}
