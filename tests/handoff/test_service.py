"""The handoff use cases on the in-memory repository, with a controllable clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from handoff.ratings import RATING_PREFIX
from sender.validation import Prepared, prepare
from shared.events import (
    BotMessage,
    ButtonsContent,
    HandoffClaimed,
    HandoffClosed,
    HandoffRequestCommand,
    HandoffRequested,
    HandoffUnattended,
    Location,
    LocationContent,
    Media,
    MediaContent,
    Reaction,
    ReactionContent,
    SendMessage,
    TemplateContent,
    TextContent,
)
from shared.profiles import CompanyProfile
from tests.handoff.support import AGENT, AGENT2, CUSTOMER, body, inbound, wamid_of
from tests.handoff.world import World


async def test_agent_with_closed_window_gets_the_template_with_a_claim_button() -> None:
    world = World()
    events = await world.says(CUSTOMER, "QUIERO HABLAR CON UN HÚMANO")
    [requested] = world.of(HandoffRequested)
    assert requested.trigger == "phrase"
    [alert] = world.sends(AGENT, events)
    assert isinstance(alert.content, TemplateContent)
    params = alert.content.components[0]["parameters"]
    assert requested.case_code in params[0]["text"] and CUSTOMER in params[0]["text"]
    assert params[1]["text"] == "QUIERO HABLAR CON UN HÚMANO"
    assert "le avisé" in body(world.sends(CUSTOMER, events)[0])


async def test_the_bot_is_silent_while_queued_and_no_duplicate_case() -> None:
    world = World()
    await world.says(CUSTOMER, "humano")
    assert await world.says(CUSTOMER, "hola?") == []
    again = await world.says(CUSTOMER, "Hablar con un humano", reply_id="humano")
    assert "Ya le avisamos" in body(world.sends(CUSTOMER, again)[0])
    assert len(world.of(HandoffRequested)) == 1


async def test_claim_sends_the_backlog_and_the_agents_words_as_the_business() -> None:
    world = World()
    await world.open_agent_window()
    await world.says(CUSTOMER, "humano")
    await world.says(CUSTOMER, "es por una factura")
    code = world.of(HandoffRequested)[0].case_code
    events = await world.says(AGENT, f"/tomar {code} Hola, soy Ana", name="Agente")
    claimed_text = body(world.sends(AGENT, events)[0])
    assert f"Tomaste el caso #{code}" in claimed_text and "es por una factura" in claimed_text
    [to_customer] = world.sends(CUSTOMER, events)
    assert to_customer.content == TextContent(body="Hola, soy Ana")
    [claimed] = world.of(HandoffClaimed)
    assert claimed.agent_phone == AGENT


async def test_agent_number_is_never_a_customer() -> None:
    world = World()
    events = await world.says(AGENT, "quiero hablar con un humano")
    assert world.of(HandoffRequested) == []
    assert "No sé a qué caso" in body(world.sends(AGENT, events)[0])


async def test_media_location_and_reactions_are_relayed_both_ways() -> None:
    world = World()
    code = await world.active_case()
    photo = Media(id="media-1", mime_type="image/jpeg")
    events = await world.says(CUSTOMER, "mirá", message_type="image", media=photo)
    [relay] = world.sends(AGENT, events)
    assert isinstance(relay.content, MediaContent)
    assert relay.content.copy_from_media_id == "media-1" and relay.content.media_id is None
    assert relay.content.caption == f"#{code} · Juan Pérez:\nmirá"

    voice = Media(id="media-2", mime_type="audio/ogg", voice=True)
    events = await world.says(CUSTOMER, None, message_type="audio", media=voice)
    header, audio = world.sends(AGENT, events)
    assert "mandó un archivo" in body(header)
    assert isinstance(audio.content, MediaContent) and audio.content.kind == "audio"
    assert audio.content.copy_from_media_id == "media-2" and audio.content.caption is None

    place = Location(latitude=-34.6, longitude=-58.4, name="Obelisco")
    events = await world.says(CUSTOMER, None, message_type="location", location=place)
    _header, where = world.sends(AGENT, events)
    assert isinstance(where.content, LocationContent) and where.content.name == "Obelisco"

    # The agent reacts to the relayed photo: the reaction lands on the customer's photo.
    photo_wamid = world.repo.outgoing[relay.event_id].source_wamid
    events = await world.says(
        AGENT,
        None,
        name="Agente",
        message_type="reaction",
        reaction=Reaction(message_id=wamid_of(relay), emoji="👍"),
    )
    [reaction] = world.sends(CUSTOMER, events)
    assert reaction.content == ReactionContent(message_id=photo_wamid or "", emoji="👍")

    # The agent sends a photo; the customer reacts to it: it lands on the agent's photo.
    agent_photo = inbound(AGENT, "te mando el comprobante", message_type="image")
    agent_photo = agent_photo.model_copy(update={"media": Media(id="media-3")})
    outcome = await world.core.on_inbound(world.repo, agent_photo)
    events = await world._record(outcome)
    [sent_photo] = world.sends(CUSTOMER, events)
    assert isinstance(sent_photo.content, MediaContent)
    assert sent_photo.content.caption == "te mando el comprobante"
    assert sent_photo.content.copy_from_media_id == "media-3"
    events = await world.says(
        CUSTOMER,
        None,
        message_type="reaction",
        reaction=Reaction(message_id=wamid_of(sent_photo), emoji="❤️"),
    )
    [back] = world.sends(AGENT, events)
    assert back.content == ReactionContent(message_id=agent_photo.wamid, emoji="❤️")


@pytest.mark.parametrize(
    ("kind", "media", "caption"),
    [
        ("image", Media(id="m-img", mime_type="image/jpeg", filename="x.jpg"), "mirá"),
        ("document", Media(id="m-doc", mime_type="application/pdf", filename="f.pdf"), "factura"),
        ("video", Media(id="m-vid", mime_type="video/mp4"), None),
        ("sticker", Media(id="m-stk", mime_type="image/webp", animated=False), None),
    ],
)
async def test_media_is_relayed_as_a_copy_both_ways_and_passes_the_senders_rules(
    kind: str, media: Media, caption: str | None
) -> None:
    """Every relayed file is a copy (the sender re-uploads it) the sender's validation accepts."""
    world = World()
    code = await world.active_case()
    events = await world.says(CUSTOMER, caption, message_type=kind, media=media)
    relay = world.sends(AGENT, events)[-1]
    assert isinstance(relay.content, MediaContent) and relay.content.kind == kind
    assert relay.content.copy_from_media_id == media.id and relay.content.media_id is None
    # The filename only where Meta takes one; the "who it's from" header as the caption.
    assert relay.content.filename == (media.filename if kind == "document" else None)
    if kind == "sticker":
        assert relay.content.caption is None
        assert "mandó un archivo" in body(world.sends(AGENT, events)[0])
    else:
        header = f"#{code} · Juan Pérez:"
        assert relay.content.caption == (f"{header}\n{caption}" if caption else header)
    assert isinstance(prepare(relay), Prepared), prepare(relay)

    agent_file = inbound(AGENT, caption, name="Agente", message_type=kind)
    agent_file = agent_file.model_copy(update={"media": media.model_copy(update={"id": "m-a"})})
    events = await world._record(await world.core.on_inbound(world.repo, agent_file))
    [to_customer] = world.sends(CUSTOMER, events)
    assert isinstance(to_customer.content, MediaContent)
    assert to_customer.content.copy_from_media_id == "m-a"
    assert to_customer.content.caption == (caption if kind != "sticker" else None)
    assert isinstance(prepare(to_customer), Prepared), prepare(to_customer)


async def test_relays_wait_for_a_closed_agent_window() -> None:
    world = World()
    await world.active_case()
    world.clock.advance(hours=25)
    events = await world.says(CUSTOMER, "¿hola? ¿seguís ahí?")
    [alert] = world.sends(AGENT, events)
    assert isinstance(alert.content, TemplateContent)
    assert await world.says(CUSTOMER, "??") == []  # held as well, one alert is enough
    events = await world.says(AGENT, "perdón, acá estoy", name="Agente")
    bodies = [body(s) for s in world.sends(AGENT, events)]
    assert bodies[0].endswith("¿hola? ¿seguís ahí?") and bodies[1].endswith("??")
    assert world.sends(CUSTOMER, events)[0].content == TextContent(body="perdón, acá estoy")


async def test_a_late_agent_answer_reaches_the_customer_by_template_first() -> None:
    world = World()
    await world.active_case()
    world.clock.advance(hours=30)
    await world.says(AGENT, "/lista", name="Agente")
    events = await world.says(AGENT, "¿Pudiste resolverlo?", name="Agente")
    [template] = world.sends(CUSTOMER, events)
    assert isinstance(template.content, TemplateContent)
    assert template.content.name == "reengage_customer"
    assert "24 h" in body(world.sends(AGENT, events)[0])
    events = await world.says(CUSTOMER, "Hola, sí")
    assert world.sends(CUSTOMER, events)[0].content == TextContent(body="¿Pudiste resolverlo?")


async def test_outside_business_hours_the_customer_is_told_when() -> None:
    profile = CompanyProfile(settings={"handoff": {"business_hours": {"tue": ["09:00-18:00"]}}})
    world = World(profile=profile)
    events = await world.says(CUSTOMER, "quiero hablar con una persona")
    [told] = world.sends(CUSTOMER, events)
    assert "fuera de horario" in body(told) and "martes 09:00" in body(told)
    [unattended] = world.of(HandoffUnattended)
    assert unattended.reason == "after_hours"
    assert world.sends(AGENT, events) == []
    assert world.of(HandoffClosed) == []
    case = world.repo.cases[unattended.case_code]
    assert (case.state, case.end_reason) == ("closed", "after_hours")
    assert world.repo.conversations[CUSTOMER].state == "bot"


async def test_no_agent_configured() -> None:
    world = World(agents=())
    await world.says(CUSTOMER, "humano")
    [unattended] = world.of(HandoffUnattended)
    assert unattended.reason == "no_agent"
    assert "no hay nadie disponible" in body(world.sends(CUSTOMER)[-1])


async def test_customer_can_end_and_agent_is_told() -> None:
    world = World()
    code = await world.active_case()
    events = await world.says(CUSTOMER, "Salir")
    assert f"El cliente cerró el caso #{code}" in body(world.sends(AGENT, events)[0])
    rating = world.sends(CUSTOMER, events)[-1].content
    assert isinstance(rating, ButtonsContent)
    assert [b.id for b in rating.buttons] == [f"{RATING_PREFIX}{code}:{n}" for n in (3, 2, 1)]
    assert world.of(HandoffClosed) == []  # it waits for the rating

    thanks = await world.rates(code, 2)
    assert [body(s) for s in world.sends(CUSTOMER, thanks)] == ["¡Gracias por contarnos!"]
    [closed] = world.of(HandoffClosed)
    assert (closed.end_reason, closed.rating) == ("customer", 2)
    again = await world.says(CUSTOMER, "hola")  # back with the bot
    assert isinstance(world.sends(CUSTOMER, again)[-1].content, ButtonsContent)
    assert RATING_PREFIX not in str(world.sends(CUSTOMER, again)[-1].content)


async def test_bot_command_returns_the_customer_to_the_bot() -> None:
    world = World()
    code = await world.active_case()
    events = await world.says(AGENT, "/bot", name="Agente")
    texts = world.sends(CUSTOMER, events)
    assert "asistente virtual" in body(texts[0])
    assert f"{RATING_PREFIX}{code}:3" in str(texts[1].content)  # the rating first
    again = await world.says(CUSTOMER, "hola")  # back with the bot: the menu
    [menu] = world.sends(CUSTOMER, again)
    assert isinstance(menu.content, ButtonsContent) and RATING_PREFIX not in str(menu.content)


async def test_idle_timer_closes_only_after_real_inactivity() -> None:
    world = World()
    code = await world.active_case()
    world.clock.advance(minutes=50)
    await world.says(CUSTOMER, "una cosa más")
    world.clock.advance(minutes=20)  # 70 min since the claim, 20 since the last message
    assert await world.fire(code, "idle") == []
    assert world.repo.timers[(code, "idle")].due_at == world.clock.now + timedelta(minutes=40)
    world.clock.advance(minutes=40)
    events = await world.fire(code, "idle")
    assert "falta de actividad" in body(world.sends(CUSTOMER, events)[0])
    assert "falta de actividad" in body(world.sends(AGENT, events)[0])
    assert RATING_PREFIX in str(world.sends(CUSTOMER, events)[-1].content)
    assert world.of(HandoffClosed) == []  # it waits for the rating, until its deadline
    await world.rating_expires(code)
    [closed] = world.of(HandoffClosed)
    assert (closed.end_reason, closed.rating) == ("idle", None)


async def test_queue_timeout_can_keep_waiting() -> None:
    world = World(profile=CompanyProfile(settings={"handoff": {"on_queue_timeout": "wait"}}))
    await world.says(CUSTOMER, "humano")
    code = world.of(HandoffRequested)[0].case_code
    events = await world.fire(code, "queue")
    assert "seguimos buscando" in body(world.sends(CUSTOMER, events)[0])
    assert world.repo.cases[code].state == "queued"
    assert [u.reason for u in world.of(HandoffUnattended)] == ["timeout"]


async def test_external_bot_gets_the_message_but_handoff_still_triggers() -> None:
    world = World(bot_mode="external")
    events = await world.says(CUSTOMER, "Hola")
    assert [type(e) for e in events] == [BotMessage]
    await world.says(CUSTOMER, "quiero un agente")
    assert len(world.of(HandoffRequested)) == 1


async def test_menu_option_reply_and_handoff_request_command() -> None:
    world = World()
    events = await world.says(CUSTOMER, "Horarios", reply_id="horarios")
    assert body(world.sends(CUSTOMER, events)[0]) == "Atendemos de lunes a viernes."
    command = HandoffRequestCommand(customer_phone="+54 9 11 5555-0099", reason="crm")
    outcome = await world.core.on_request(world.repo, command)
    [requested] = [e for e in outcome.events if isinstance(e, HandoffRequested)]
    assert requested.trigger == "command" and requested.customer.phone == "+5491155550099"


async def test_only_free_agents_are_notified() -> None:
    profile = CompanyProfile(settings={"handoff": {"max_cases_per_agent": 1}})
    world = World(agents=(AGENT, AGENT2), profile=profile)
    await world.active_case(AGENT)
    events = await world.says("+5491155550077", "humano")
    assert world.sends(AGENT, events) == []
    assert len(world.sends(AGENT2, events)) == 1


@pytest.mark.parametrize("text", ["/fin", "/bot"])
async def test_agent_cannot_close_someone_elses_case(text: str) -> None:
    world = World(agents=(AGENT, AGENT2))
    code = await world.active_case(AGENT)
    await world.open_agent_window(AGENT2)
    events = await world.says(AGENT2, f"{text} {code}", name="Otro")
    assert "lo atiende otro agente" in body(world.sends(AGENT2, events)[0])
    assert world.sends(CUSTOMER, events) == []
    assert world.repo.cases[code].state == "active"


async def test_a_quote_not_mapped_yet_asks_for_a_retry_then_answers_the_one_waiting() -> None:
    from handoff.agents import QuoteNotKnownYet

    world = World()
    await world.open_agent_window()
    await world.says(CUSTOMER, "humano")
    [notification] = world.sends(AGENT)[-1:]
    # The sender has not reported the wamid yet.
    world.repo.outgoing[notification.event_id] = world.repo.outgoing[
        notification.event_id
    ].__class__(notification.event_id, "100", AGENT, "agent", None, None)
    quote = inbound(AGENT, "hola", quoting=wamid_of(notification), at=world.clock.now)
    with pytest.raises(QuoteNotKnownYet):
        await world.core.on_inbound(world.repo, quote, wait_for_quotes=True)
    outcome = await world.core.on_inbound(world.repo, quote, wait_for_quotes=False)
    # Given up on the quote, the message is for no case: the one waiting takes it.
    assert "Tomaste el caso" in body(world.sends(AGENT, outcome.events)[0])
    assert [body(s) for s in world.sends(CUSTOMER, outcome.events)] == ["hola"]


async def test_agent_window_closed_per_meta_holds_the_relay_and_alerts() -> None:
    from shared.events import MessageFailed, MetaError

    world = World()
    await world.active_case()
    events = await world.says(CUSTOMER, "¿me escuchás?")
    [relay] = world.sends(AGENT, events)
    failed = MessageFailed(
        command_id=relay.event_id,
        to=AGENT,
        reason="131047: re-engagement message",
        reason_code="window_closed",
        error=MetaError(code=131047),
    )
    outcome = await world.core.on_failed(world.repo, failed)
    [alert] = [e for e in outcome.events if isinstance(e, SendMessage)]
    assert isinstance(alert.content, TemplateContent) and alert.to == AGENT
    # When the agent writes (or taps the button), the held relay goes first.
    events = await world.says(AGENT, "acá estoy", name="Agente")
    assert body(world.sends(AGENT, events)[0]).endswith("¿me escuchás?")


async def test_a_failed_relay_to_the_customer_is_reported_to_the_agent() -> None:
    from shared.events import MessageFailed

    world = World()
    await world.active_case()
    events = await world.says(AGENT, "¿Pudiste?", name="Agente")
    [relay] = world.sends(CUSTOMER, events)
    failed = MessageFailed(command_id=relay.event_id, to=CUSTOMER, reason="131026: undeliverable")
    outcome = await world.core.on_failed(world.repo, failed)
    [told] = [e for e in outcome.events if isinstance(e, SendMessage)]
    assert told.to == AGENT and "No pude entregarle" in body(told) and "131026" in body(told)
    unknown = MessageFailed(command_id="not-ours", to=CUSTOMER, reason="x")
    assert (await world.core.on_failed(world.repo, unknown)).events == []
