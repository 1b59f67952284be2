"""Answering is enough (issue 15): an agent's message for no case claims the one waiting, or is
kept while they choose among several from a list; on the in-memory repository."""

from __future__ import annotations

from datetime import timedelta

from shared.events import (
    HandoffClaimed,
    HandoffRequested,
    ListContent,
    SendMessage,
    TemplateContent,
    TextContent,
)
from shared.profiles import CompanyProfile
from tests.handoff.support import AGENT, AGENT2, CUSTOMER, body, wamid_of
from tests.handoff.world import World

OTHER = "+5491155550002"


def list_of(send: SendMessage) -> ListContent:
    assert isinstance(send.content, ListContent), send.content
    return send.content


def row_ids(send: SendMessage) -> list[str]:
    return [row.id for section in list_of(send).sections for row in section.rows]


async def two_waiting(world: World) -> tuple[str, str]:
    await world.says(CUSTOMER, "quiero un humano", name="Juan Pérez")
    await world.says(OTHER, "necesito una persona", name="Marta Gómez")
    first, second = (r.case_code for r in world.of(HandoffRequested))
    return first, second


async def tap(world: World, code: str, agent: str = AGENT) -> list[SendMessage]:
    events = await world.says(
        agent, f"#{code}", name="Agente", reply_id=f"caso:{code}", reply_kind="list_reply"
    )
    return [e for e in events if isinstance(e, SendMessage)]


async def test_an_agent_with_no_case_who_answers_the_alert_claims_the_one_waiting() -> None:
    world = World()
    await world.says(CUSTOMER, "quiero hablar con un humano")
    [alert] = world.sends(AGENT)
    assert isinstance(alert.content, TemplateContent)  # their window is closed
    events = await world.says(AGENT, "Hola, soy Ana", name="Agente")
    [claimed] = world.of(HandoffClaimed)
    assert claimed.agent_phone == AGENT
    # Their words are the first answer: no canned greeting before them.
    assert [body(s) for s in world.sends(CUSTOMER, events)] == ["Hola, soy Ana"]
    assert "Tomaste el caso" in body(world.sends(AGENT, events)[0])
    # The next plain message goes to the case they now have.
    events = await world.says(AGENT, "¿En qué te ayudo?", name="Agente")
    assert [body(s) for s in world.sends(CUSTOMER, events)] == ["¿En qué te ayudo?"]


async def test_an_agent_on_a_case_keeps_writing_to_it_while_another_waits() -> None:
    world = World()
    code = await world.active_case()
    await world.says(OTHER, "humano", name="Marta Gómez")
    events = await world.says(AGENT, "sigo con vos", name="Agente")
    assert [body(s) for s in world.sends(CUSTOMER, events)] == ["sigo con vos"]
    assert world.sends(OTHER, events) == []
    assert world.repo.cases[code].agent == AGENT and world.repo.drafts == []


async def test_quoting_the_alert_of_one_of_several_claims_that_case() -> None:
    world = World()
    await world.open_agent_window()
    _first, second = await two_waiting(world)
    alert = next(s for s in world.sends(AGENT) if f"#{second}" in body(s))
    events = await world.says(AGENT, "Hola Marta", name="Agente", quoting=wamid_of(alert))
    assert [body(s) for s in world.sends(OTHER, events)] == ["Hola Marta"]
    assert world.sends(CUSTOMER, events) == []
    assert world.repo.cases[second].agent == AGENT


async def test_several_waiting_the_message_is_kept_and_the_tapped_case_gets_it() -> None:
    world = World()
    first, second = await two_waiting(world)
    events = await world.says(AGENT, "Hola, soy Ana", name="Agente")
    assert world.sends(CUSTOMER, events) == [] and world.sends(OTHER, events) == []
    [asked] = world.sends(AGENT, events)
    choice = list_of(asked)
    assert row_ids(asked) == [f"caso:{first}", f"caso:{second}"]
    rows = choice.sections[0].rows
    assert rows[0].title == f"#{first} Juan Pérez" and rows[0].description
    assert CUSTOMER in rows[0].description and "esperando" in rows[0].description
    assert "¿Para qué caso es tu mensaje?" in choice.body
    assert world.repo.timers[(AGENT, "draft")].due_at == world.clock.now + timedelta(seconds=600)

    # A second message before choosing joins the first.
    world.clock.advance(seconds=30)
    events = await world.says(AGENT, "¿Cómo te puedo ayudar?", name="Agente")
    [asked] = world.sends(AGENT, events)
    assert "Tengo 2 mensajes tuyos guardados" in list_of(asked).body
    assert len(world.repo.drafts) == 2

    sends = await tap(world, second)
    to_marta = [body(s) for s in sends if s.to == OTHER]
    assert to_marta == ["Hola, soy Ana", "¿Cómo te puedo ayudar?"]
    assert [s for s in sends if s.to == CUSTOMER] == []
    assert any(f"Tomaste el caso #{second}" in body(s) for s in sends if s.to == AGENT)
    assert world.repo.cases[second].agent == AGENT and world.repo.cases[first].state == "queued"
    assert world.repo.drafts == [] and (AGENT, "draft") not in world.repo.timers
    # The tap's title is not a message, and the case is now theirs.
    events = await world.says(AGENT, "Listo", name="Agente")
    assert [body(s) for s in world.sends(OTHER, events)] == ["Listo"]


async def test_a_customer_without_a_phone_shows_as_their_username_in_the_list() -> None:
    world = World()
    await world.says(None, "humano", user_id="AR.1234567890", username="@anita", name="Ana")
    await world.says(OTHER, "humano", name="Marta Gómez")
    events = await world.says(AGENT, "Hola", name="Agente")
    [asked] = world.sends(AGENT, events)
    first = list_of(asked).sections[0].rows[0]
    assert first.title.endswith(" Ana") and first.description is not None
    assert "@anita" in first.description


async def test_an_unchosen_draft_expires_once_with_a_note() -> None:
    world = World()
    await two_waiting(world)
    await world.says(AGENT, "Hola, soy Ana", name="Agente")
    await world.says(AGENT, "¿seguís ahí?", name="Agente")
    world.clock.advance(seconds=601)
    events = await world.fire(AGENT, "draft")
    [note] = world.sends(AGENT, events)
    assert "no envié tu mensaje" in body(note)
    assert "«Hola, soy Ana»" in body(note) and "«¿seguís ahí?»" in body(note)
    assert world.sends(CUSTOMER, events) == [] and world.repo.drafts == []
    assert await world.fire(AGENT, "draft") == []


async def test_a_tap_after_the_drafts_expired_claims_the_case_as_tomar_does() -> None:
    world = World()
    first, _second = await two_waiting(world)
    await world.says(AGENT, "Hola", name="Agente")
    await world.fire(AGENT, "draft")
    sends = await tap(world, first)
    [greeting] = [body(s) for s in sends if s.to == CUSTOMER]
    assert greeting.startswith("Hola, soy del equipo de")
    assert world.repo.cases[first].agent == AGENT


async def test_a_case_taken_meanwhile_keeps_the_draft_and_asks_again() -> None:
    world = World(agents=(AGENT, AGENT2))
    first, second = await two_waiting(world)
    await world.says(AGENT, "Hola, soy Ana", name="Ana")
    await world.says(AGENT2, f"/tomar {first}", name="Beto")
    sends = await tap(world, first)
    assert [s for s in sends if s.to in (CUSTOMER, OTHER)] == []
    told, asked = (s for s in sends if s.to == AGENT)
    assert f"El caso #{first} lo atiende otro agente" in body(told)
    assert row_ids(asked) == [f"caso:{second}"]
    assert len(world.repo.drafts) == 1
    sends = await tap(world, second)
    assert [body(s) for s in sends if s.to == OTHER] == ["Hola, soy Ana"]


async def test_the_one_waiting_taken_by_someone_else_first_is_told_not_sent() -> None:
    world = World(agents=(AGENT, AGENT2))
    await world.says(CUSTOMER, "humano")
    code = world.of(HandoffRequested)[0].case_code
    await world.says(AGENT2, "Hola, soy Beto", name="Beto")  # the only one waiting: Beto's
    events = await world.says(AGENT, "Hola, soy Ana", name="Ana")
    assert world.sends(CUSTOMER, events) == []
    assert "No sé a qué caso va tu mensaje, no lo envié" in body(world.sends(AGENT, events)[0])
    assert world.repo.cases[code].agent == AGENT2 and world.repo.drafts == []


async def test_an_agent_with_several_cases_and_none_current_chooses_among_them() -> None:
    world = World()
    await world.open_agent_window()
    first, second = await two_waiting(world)
    await world.says(AGENT, f"/tomar {first}", name="Agente")
    await world.says(AGENT, f"/tomar {second}", name="Agente")
    agent = world.repo.agents[AGENT]
    world.repo.agents[AGENT] = type(agent)(AGENT, agent.last_inbound_at, None)
    events = await world.says(AGENT, "¿Todo bien?", name="Agente")
    [asked] = world.sends(AGENT, events)
    assert row_ids(asked) == [f"caso:{first}", f"caso:{second}"]
    descriptions = [row.description or "" for row in list_of(asked).sections[0].rows]
    assert all("con vos" in d for d in descriptions)
    sends = await tap(world, first)
    assert [body(s) for s in sends if s.to == CUSTOMER] == ["¿Todo bien?"]


async def test_the_list_offers_at_most_ten_cases() -> None:
    world = World()
    for n in range(12):
        await world.says(f"+54911555510{n:02d}", "humano", name=f"Cliente {n}")
    events = await world.says(AGENT, "Hola", name="Agente")
    [asked] = world.sends(AGENT, events)
    assert len(row_ids(asked)) == 10


async def test_nothing_waiting_the_agent_is_told_and_nothing_is_kept() -> None:
    world = World()
    events = await world.says(AGENT, "Hola", name="Agente")
    [told] = world.sends(AGENT, events)
    assert isinstance(told.content, TextContent)
    assert "No sé a qué caso va tu mensaje" in told.content.body and world.repo.drafts == []


async def test_a_profile_words_the_list_and_the_note_its_own_way() -> None:
    texts = {
        "handoff.agent.choose_case": "¿Cuál? Hasta las {until}.",
        "handoff.agent.choose_button": "Ver casos",
        "handoff.agent.choose_row": "{name} #{code}",
        "handoff.agent.draft_expired": "Se venció: {messages}",
    }
    world = World(profile=CompanyProfile(texts=texts))
    first, _second = await two_waiting(world)
    events = await world.says(AGENT, "Hola", name="Agente")
    choice = list_of(world.sends(AGENT, events)[0])
    assert choice.body == "¿Cuál? Hasta las 12:10." and choice.button == "Ver casos"
    assert choice.sections[0].rows[0].title == f"Juan Pérez #{first}"
    events = await world.fire(AGENT, "draft")
    assert body(world.sends(AGENT, events)[0]) == "Se venció: «Hola»"


async def test_a_paused_agent_who_writes_claims_nothing() -> None:
    world = World()
    await world.says(AGENT, "/pausa", name="Agente")
    await world.says(CUSTOMER, "quiero hablar con un humano")
    events = await world.says(AGENT, "Hola", name="Agente")
    assert world.of(HandoffClaimed) == [] and world.sends(CUSTOMER, events) == []
    [told] = world.sends(AGENT, events)
    assert "No sé a qué caso va tu mensaje" in body(told) and world.repo.drafts == []
