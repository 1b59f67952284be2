"""Issue 15's agent features on the in-memory repository: transfers, pause, canned replies, the
reply timeout and the customer's rating."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from handoff.options import options_for
from handoff.ratings import RATING_PREFIX
from sender.validation import Prepared, prepare
from shared.events import (
    ButtonsContent,
    HandoffClosed,
    HandoffRequested,
    HandoffUnattended,
    TemplateContent,
    TextContent,
)
from shared.profiles import CompanyProfile
from tests.handoff.support import AGENT, AGENT2, CUSTOMER, body
from tests.handoff.world import World

NAMES = {AGENT: "Ana", AGENT2: "Beto Gómez"}


def team(**handoff: Any) -> World:
    """Two agents, Ana and Beto, on a profile with ``handoff`` options."""
    profile = CompanyProfile(settings={"handoff": {"agent_names": NAMES, **handoff}})
    return World(agents=(AGENT, AGENT2), profile=profile)


def texts(world: World, to: str) -> list[str]:
    return [body(s) for s in world.sends(to)]


# ------------------------------------------------------------------ /pasar


async def test_transfer_to_an_agent_whose_window_is_closed_goes_by_template() -> None:
    world = team()
    code = await world.active_case(AGENT)
    events = await world.says(AGENT, f"/pasar {code} beto", name="Agente")

    [alert] = world.sends(AGENT2, events)  # Beto never wrote: the alert template, its button
    assert isinstance(alert.content, TemplateContent)
    assert any(r == AGENT2 for r, _c, _m in world.repo.held)  # the briefing waits for him
    assert "Le pasaste el caso" in body(world.sends(AGENT, events)[-1])
    assert "Te paso con Beto Gómez" in body(world.sends(CUSTOMER, events)[-1])
    assert (await world.repo.get_case(code)).agent == AGENT2  # type: ignore[union-attr]

    # Beto writes: the briefing first; what he writes now reaches the customer.
    answer = await world.says(AGENT2, "Hola Juan, sigo yo", name="Beto")
    assert "te pasó el caso" in body(world.sends(AGENT2, answer)[0])
    assert "Hola Juan, sigo yo" in body(world.sends(CUSTOMER, answer)[-1])
    # Ana's words no longer go anywhere.
    late = await world.says(AGENT, f"#{code} sigo acá", name="Agente")
    assert world.sends(CUSTOMER, late) == []

    await world.says(AGENT2, "/fin", name="Beto")
    assert world.of(HandoffClosed) == []  # the transcript waits for the customer's rating
    await world.rating_expires(code)  # the transcript goes without it
    [closed] = world.of(HandoffClosed)
    assert [(h.agent_phone, h.agent_name) for h in closed.handlers] == [
        (AGENT, "Ana"),
        (AGENT2, "Beto Gómez"),
    ]
    assert closed.handlers[0].until == closed.handlers[1].since
    assert any("Ana le pasó el caso a Beto Gómez" in line.text for line in closed.transcript)


async def test_transfer_by_number_with_the_window_open_is_a_text() -> None:
    world = team()
    await world.open_agent_window(AGENT2)
    code = await world.active_case(AGENT)
    events = await world.says(AGENT, f"/pasar {code} 2", name="Agente")
    [briefing] = world.sends(AGENT2, events)
    assert isinstance(briefing.content, TextContent)
    assert f"Ana te pasó el caso #{code}" in briefing.content.body
    assert "quiero un humano" in briefing.content.body


async def test_transfer_refusals_say_why() -> None:
    world = team()
    code = await world.active_case(AGENT)
    await world.says(AGENT, f"/pasar {code} Carla", name="Agente")
    assert "No encuentro al agente «Carla»" in texts(world, AGENT)[-1]
    assert "2. Beto Gómez (+5491100000002)" in texts(world, AGENT)[-1]
    await world.says(AGENT, f"/pasar {code}", name="Agente")
    assert "/pasar <código> <agente>" in texts(world, AGENT)[-1]
    await world.says(AGENT2, f"/pasar {code} Ana", name="Beto")
    assert "lo atiende otro agente" in texts(world, AGENT2)[-1]
    await world.says(AGENT, f"/pasar {code} ana", name="Agente")
    assert "ya es tuyo" in texts(world, AGENT)[-1]


# ------------------------------------------------------------------ /pausa, /vuelvo


async def test_a_paused_agent_is_not_offered_new_cases() -> None:
    world = team()
    await world.says(AGENT, "/pausa", name="Agente")
    assert "estás en pausa" in texts(world, AGENT)[-1]
    before = len(world.sends(AGENT))
    await world.says(CUSTOMER, "quiero un humano")
    assert len(world.sends(AGENT)) == before
    assert len(world.sends(AGENT2)) == 1  # Beto is alerted


async def test_nobody_available_tells_the_customer_and_mails_the_profile() -> None:
    world = team()
    await world.says(AGENT, "/pausa", name="Agente")
    await world.says(AGENT2, "/pausa", name="Beto")
    await world.says(CUSTOMER, "quiero un humano")
    assert "no hay nadie disponible" in texts(world, CUSTOMER)[-1]
    [unattended] = world.of(HandoffUnattended)
    assert unattended.reason == "no_agent"

    await world.says(AGENT2, "/vuelvo", name="Beto")
    assert "Volviste" in texts(world, AGENT2)[-1]
    await world.says(CUSTOMER, "quiero un humano")
    assert "quiere hablar con una persona" in texts(world, AGENT2)[-1]


# ------------------------------------------------------------------ /r


async def test_canned_replies_list_and_fill_in_the_customers_name() -> None:
    world = team(canned_replies={"saludo": "Hola {name}, ¿en qué te ayudo?", "Envío": "Sale hoy."})
    await world.open_agent_window(AGENT)
    await world.says(AGENT, "/r saludo", name="Agente")
    assert "No tenés un caso activo" in texts(world, AGENT)[-1]

    await world.active_case(AGENT)
    await world.says(AGENT, "/r", name="Agente")
    listing = texts(world, AGENT)[-1]
    assert "• saludo: Hola {name}, ¿en qué te ayudo?" in listing and "• Envío" in listing
    events = await world.says(AGENT, "/r SALUDO", name="Agente")
    assert body(world.sends(CUSTOMER, events)[-1]) == "Hola Juan Pérez, ¿en qué te ayudo?"
    await world.says(AGENT, "/r envio", name="Agente")
    assert texts(world, CUSTOMER)[-1] == "Sale hoy."
    await world.says(AGENT, "/r chau", name="Agente")
    assert "No hay una respuesta guardada «chau»" in texts(world, AGENT)[-1]


async def test_no_canned_replies_configured() -> None:
    world = team()
    await world.says(AGENT, "/r", name="Agente")
    assert "No hay respuestas guardadas" in texts(world, AGENT)[-1]


async def test_help_lists_the_new_commands() -> None:
    world = team()
    await world.says(AGENT, "/ayuda", name="Agente")
    for command in ("/pasar", "/pausa", "/vuelvo", "/r <nombre>"):
        assert command in texts(world, AGENT)[-1]


# ------------------------------------------------------------------ the reply timeout


async def test_a_waiting_customer_is_offered_to_the_others_and_the_first_takes_it() -> None:
    world = team(agent_reply_timeout_seconds=120)
    await world.open_agent_window(AGENT2)
    code = await world.active_case(AGENT)
    await world.says(CUSTOMER, "¿hola? ¿sigue ahí?")
    timer = world.repo.timers[(code, "reply")]
    assert timer.due_at == world.clock.now + timedelta(seconds=120)

    world.clock.advance(seconds=121)
    await world.fire(code, "reply")
    assert f"#{code} · Juan Pérez ({CUSTOMER}) espera respuesta de Ana" in texts(world, AGENT2)[-1]
    assert "se lo ofrecí a los otros agentes" in texts(world, AGENT)[-1]

    events = await world.says(AGENT2, f"/tomar {code} Perdón la demora", name="Beto")
    assert "Tomaste el caso" in body(world.sends(AGENT2, events)[0])
    assert body(world.sends(CUSTOMER, events)[-1]) == "Perdón la demora"
    assert "Beto Gómez tomó el caso" in body(world.sends(AGENT, events)[-1])
    assert (await world.repo.get_case(code)).agent == AGENT2  # type: ignore[union-attr]


async def test_the_reply_timeout_does_nothing_once_the_agent_answered() -> None:
    world = team(agent_reply_timeout_seconds=120)
    await world.open_agent_window(AGENT2)
    code = await world.active_case(AGENT)
    await world.says(CUSTOMER, "¿hola?")
    world.clock.advance(seconds=60)
    await world.says(AGENT, "acá estoy", name="Agente")
    world.clock.advance(seconds=61)
    assert [s for s in await world.fire(code, "reply")] == []
    before = len(world.sends(AGENT2))
    await world.says(AGENT2, f"/tomar {code}", name="Beto")
    assert "otro agente" in texts(world, AGENT2)[-1] and len(world.sends(AGENT2)) == before + 1


async def test_a_later_wait_moves_the_reply_timer() -> None:
    world = team(agent_reply_timeout_seconds=120)
    code = await world.active_case(AGENT)
    await world.says(CUSTOMER, "¿hola?")
    world.clock.advance(seconds=60)
    await world.says(AGENT, "ya te miro", name="Agente")
    world.clock.advance(seconds=30)
    await world.says(CUSTOMER, "dale, gracias")  # a new wait, from now
    world.clock.advance(seconds=31)  # the first wait's end
    assert await world.fire(code, "reply") == []
    assert world.repo.timers[(code, "reply")].due_at == world.clock.now + timedelta(seconds=89)


async def test_nobody_takes_it_and_it_stays_with_its_agent() -> None:
    world = team(agent_reply_timeout_seconds=120)
    code = await world.active_case(AGENT)
    await world.says(AGENT2, "/pausa", name="Beto")  # nobody else available
    await world.says(CUSTOMER, "¿hola?")
    world.clock.advance(seconds=121)
    await world.fire(code, "reply")
    assert "espera tu respuesta hace 2 min." in texts(world, AGENT)[-1]
    assert world.repo.offers == {}
    assert (await world.repo.get_case(code)).agent == AGENT  # type: ignore[union-attr]


# ------------------------------------------------------------------ the rating


def tap(code: str, score: int) -> dict[str, Any]:
    return {"reply_id": f"{RATING_PREFIX}{code}:{score}"}


async def test_the_default_profile_asks_for_the_rating() -> None:
    assert options_for(CompanyProfile()).rating.enabled
    world = World()  # the default profile, no handoff settings at all
    code = await world.active_case(AGENT)
    await world.says(AGENT, "/fin", name="Agente")
    rating = world.sends(CUSTOMER)[-1]
    assert isinstance(rating.content, ButtonsContent)
    assert [b.id for b in rating.content.buttons] == [f"csat:{code}:{n}" for n in (3, 2, 1)]
    assert world.of(HandoffClosed) == []


async def test_the_rating_is_stored_once_and_goes_with_the_transcript() -> None:
    world = team()
    code = await world.active_case(AGENT)
    await world.says(AGENT, "/fin", name="Agente")
    rating = world.sends(CUSTOMER)[-1]
    assert isinstance(rating.content, ButtonsContent)
    assert [b.id for b in rating.content.buttons] == [f"csat:{code}:{n}" for n in (3, 2, 1)]
    assert isinstance(prepare(rating), Prepared), prepare(rating)  # Meta's rules hold
    assert world.of(HandoffClosed) == []  # the transcript waits for the answer

    await world.says(CUSTOMER, "😀 Muy bien", **tap(code, 3))
    assert texts(world, CUSTOMER)[-1] == "¡Gracias por contarnos!"
    [closed] = world.of(HandoffClosed)
    assert (closed.rating, closed.rating_label) == (3, "😀 Muy bien")
    assert world.repo.ratings[code].score == 3

    await world.says(CUSTOMER, "😞 Mal", **tap(code, 1))  # a second tap
    assert texts(world, CUSTOMER)[-1] == "Ya recibimos tu calificación, ¡gracias!"
    assert world.repo.ratings[code].score == 3 and len(world.of(HandoffClosed)) == 1
    assert await world.fire(code, "rating") == []


async def test_a_late_rating_is_not_counted_and_the_transcript_goes_at_the_deadline() -> None:
    world = team(rating={"enabled": True, "timeout_seconds": 600})
    code = await world.active_case(AGENT)
    await world.says(AGENT, "/fin", name="Agente")
    world.clock.advance(seconds=601)
    await world.says(CUSTOMER, "😐 Regular", **tap(code, 2))
    assert texts(world, CUSTOMER)[-1] == "Gracias, pero esa encuesta ya cerró."
    assert world.of(HandoffClosed) == []
    await world.fire(code, "rating")
    [closed] = world.of(HandoffClosed)
    assert closed.rating is None and closed.handlers[0].agent_phone == AGENT
    await world.says(CUSTOMER, "😐 Regular", **tap(code, 2))
    assert texts(world, CUSTOMER)[-1] == "Gracias, pero esa encuesta ya cerró."
    assert world.repo.ratings[code].state == "expired"


async def test_no_rating_when_the_customers_window_is_closed_or_it_is_off() -> None:
    world = team()
    await world.active_case(AGENT)
    world.clock.advance(hours=25)
    await world.says(AGENT, "/fin", name="Agente")
    assert len(world.of(HandoffClosed)) == 1
    assert "csat:" not in str([s.content for s in world.sends(CUSTOMER)])

    off = team(rating={"enabled": False})
    await off.active_case(AGENT)
    await off.says(AGENT, "/fin", name="Agente")
    assert len(off.of(HandoffClosed)) == 1
    assert isinstance(off.sends(CUSTOMER)[-1].content, ButtonsContent)  # the menu
    assert "csat:" not in str(off.sends(CUSTOMER)[-1].content)


async def test_an_open_case_does_not_swallow_a_rating_tap() -> None:
    world = team()
    code = await world.active_case(AGENT)
    await world.says(AGENT, "/fin", name="Agente")
    await world.says(CUSTOMER, "quiero un humano")  # a new case
    assert len(world.of(HandoffRequested)) == 2
    await world.says(CUSTOMER, "😀 Muy bien", **tap(code, 3))
    assert world.repo.ratings[code].score == 3
