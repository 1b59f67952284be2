"""Customers by every identifier Meta sends, phone-less ones, identity changes and system
messages: the use cases on the in-memory repository."""

from __future__ import annotations

from shared.events import (
    ButtonsContent,
    HandoffClosed,
    HandoffRequestCommand,
    HandoffRequested,
    Identity,
    TemplateContent,
    TextContent,
)
from shared.signals import IdentityChanged
from tests.handoff.support import AGENT, CUSTOMER, body, identity_changed
from tests.handoff.world import World

BSUID = "AR.13491208655302741918"
NEW_BSUID = "AR.99991208655302741918"
NEW_PHONE = "+5491144445555"
ANA = {"user_id": BSUID, "username": "ana", "name": "Ana"}  # a phone-less customer


def new_number(world: World) -> IdentityChanged:
    """CUSTOMER (with BSUID) moves to NEW_PHONE (with NEW_BSUID) now."""
    return identity_changed(
        "user_changed_number",
        Identity(phone=CUSTOMER, user_id=BSUID),
        Identity(phone=NEW_PHONE, user_id=NEW_BSUID),
        at=world.clock.now,
    )


async def test_a_phone_less_customer_gets_the_menu_at_their_bsuid() -> None:
    world = World()
    events = await world.says(None, "Hola", **ANA)
    [menu] = world.sends(BSUID, events)
    assert isinstance(menu.content, ButtonsContent)
    assert menu.to_phone is None


async def test_a_phone_less_customer_reaches_an_agent_who_sees_the_username() -> None:
    world = World()
    await world.open_agent_window()
    events = await world.says(None, "quiero un humano", **ANA)
    [requested] = world.of(HandoffRequested)
    assert requested.customer.user_id == BSUID and requested.customer.username == "ana"
    assert requested.customer.phone is None
    [notification] = world.sends(AGENT, events)
    assert "Ana (@ana)" in body(notification)
    assert isinstance(notification.fallback_template, TemplateContent)
    who = notification.fallback_template.components[0]["parameters"][0]["text"]
    assert who == f"#{requested.case_code} Ana (@ana)"
    assert "le avisé" in body(world.sends(BSUID, events)[0])

    listing = await world.says(AGENT, "/lista", name="Agente")
    assert f"#{requested.case_code} · Ana (@ana) · esperando" in body(
        world.sends(AGENT, listing)[0]
    )


async def test_relays_both_ways_and_fin_with_a_phone_less_customer() -> None:
    world = World()
    code = await world.active_case(phone=None, **ANA)
    assert body(world.sends(BSUID)[-1]) == "hola, te atiendo"
    events = await world.says(None, "mi pedido no llegó", **ANA)
    [relayed] = world.sends(AGENT, events)
    assert body(relayed) == f"#{code} · Ana (@ana):\nmi pedido no llegó"

    events = await world.says(AGENT, "/fin", name="Agente")
    to_customer = world.sends(BSUID, events)
    assert "terminó" in body(to_customer[0]) and isinstance(to_customer[1].content, ButtonsContent)
    assert f"csat:{code}:3" in str(to_customer[1].content)  # the rating, at their BSUID
    thanks = await world.rates(code, 3, phone=None, **ANA)
    assert [body(s) for s in world.sends(BSUID, thanks)] == ["¡Gracias por contarnos!"]
    [closed] = world.of(HandoffClosed)
    assert closed.rating == 3
    assert closed.customer.user_id == BSUID and closed.customer.username == "ana"
    assert [line.author for line in closed.transcript] == ["customer", "agent", "customer"]


async def test_a_customer_known_by_phone_stays_one_conversation_when_the_phone_is_hidden() -> None:
    world = World()
    code = await world.active_case(user_id=BSUID)  # CUSTOMER, with their BSUID
    # Later Meta leaves the phone out: the same case, and sends still go to the phone.
    events = await world.says(None, "sigo acá", user_id=BSUID)
    assert body(world.sends(AGENT, events)[0]).startswith(f"#{code} · Juan Pérez:")
    answer = await world.says(AGENT, "perfecto", name="Agente")
    [reply] = world.sends(CUSTOMER, answer)
    assert reply.content == TextContent(body="perfecto")
    assert len(world.repo.conversations) == 1


async def test_a_customer_first_known_by_bsuid_keeps_their_key_when_the_phone_shows() -> None:
    world = World()
    await world.says(None, "Hola", user_id=BSUID)
    events = await world.says(CUSTOMER, "Hola de nuevo", user_id=BSUID)
    assert list(world.repo.conversations) == [BSUID]
    [menu] = world.sends(CUSTOMER, events)  # the phone is known now: sends go to it
    assert isinstance(menu.content, ButtonsContent)
    assert world.repo.conversations[BSUID].phone == CUSTOMER


async def test_a_number_change_mid_case_keeps_the_case() -> None:
    world = World()
    code = await world.active_case(user_id=BSUID)
    before = world.clock.now
    world.clock.advance(minutes=1)
    change = new_number(world)
    events = await world.changes(change)
    [told] = world.sends(AGENT, events)
    assert body(told).startswith(f"#{code} · Juan Pérez cambió su número de WhatsApp")
    assert f"{CUSTOMER} → {NEW_PHONE}" in body(told)

    # A message sent before the change, from the old phone, still reaches the case.
    late = await world.says(CUSTOMER, "lo mandé antes", user_id=BSUID, at=before)
    assert body(world.sends(AGENT, late)[0]).startswith(f"#{code} · ")
    fresh = await world.says(NEW_PHONE, "ya con el número nuevo", user_id=NEW_BSUID)
    assert body(world.sends(AGENT, fresh)[0]).startswith(f"#{code} · ")
    answer = await world.says(AGENT, "anotado", name="Agente")
    assert world.sends(NEW_PHONE, answer) and not world.sends(CUSTOMER, answer)
    assert len(world.of(HandoffRequested)) == 1

    await world.says(AGENT, "/fin", name="Agente")
    assert f"csat:{code}:3" in str(world.sends(NEW_PHONE)[-1].content)  # the rating
    await world.rates(code, 3, phone=NEW_PHONE, user_id=NEW_BSUID)  # from the new number
    [closed] = world.of(HandoffClosed)
    assert closed.rating == 3
    assert (closed.customer.phone, closed.customer.user_id) == (NEW_PHONE, NEW_BSUID)
    [note] = [line for line in closed.transcript if line.author == "system"]
    assert f"{CUSTOMER} → {NEW_PHONE}" in note.text


async def test_the_same_change_told_twice_is_noted_once() -> None:
    world = World()
    await world.active_case(phone=None, **ANA)
    previous, current = Identity(user_id=BSUID), Identity(user_id=NEW_BSUID)
    first = await world.changes(identity_changed("user_changed_user_id", previous, current))
    world.clock.advance(seconds=1)
    again = identity_changed("user_id_update", previous, current, at=world.clock.now)
    assert len(world.sends(AGENT, first)) == 1
    assert await world.changes(again) == []
    fresh = await world.says(None, "hola", user_id=NEW_BSUID)
    assert world.sends(AGENT, fresh)
    assert world.repo.conversations[BSUID].user_id == NEW_BSUID


async def test_a_message_under_the_new_ids_before_the_change_is_merged() -> None:
    world = World()
    code = await world.active_case(user_id=BSUID)
    # The new number writes first (webhooks come in any order): a conversation of its own...
    early = await world.says(NEW_PHONE, "soy yo, cambié de número", user_id=NEW_BSUID)
    assert world.sends(NEW_PHONE, early)  # the bot greeted a stranger
    world.clock.advance(seconds=1)
    change = new_number(world)
    await world.changes(change)
    # ...until the change says who it is: the new identifiers find the open case.
    events = await world.says(NEW_PHONE, "¿seguís ahí?", user_id=NEW_BSUID)
    assert body(world.sends(AGENT, events)[0]).startswith(f"#{code} · ")


async def test_a_phone_given_to_someone_else_after_the_change_is_a_new_customer() -> None:
    world = World()
    await world.says(CUSTOMER, "Hola", user_id=BSUID)
    change = new_number(world)
    await world.changes(change)
    world.clock.advance(days=200)
    stranger = "AR.55551208655302741918"
    await world.says(CUSTOMER, "Hola", user_id=stranger, name="Otra persona")
    assert len(world.repo.conversations) == 2
    assert world.repo.conversations[BSUID].phone == NEW_PHONE
    assert world.repo.conversations[stranger].phone == CUSTOMER


async def test_held_messages_follow_the_customer_to_their_new_number() -> None:
    world = World()
    await world.active_case(user_id=BSUID)
    world.clock.advance(hours=25)  # the customer's window closed
    await world.says(AGENT, "¿pudiste verlo?", name="Agente")
    held = [m for _r, _c, m in world.repo.held]
    assert [m.to for m in held] == [CUSTOMER]
    await world.changes(new_number(world))
    events = await world.says(NEW_PHONE, "hola", user_id=NEW_BSUID)
    [released] = [e for e in world.sends(NEW_PHONE, events) if body(e) == "¿pudiste verlo?"]
    assert released.event_id == held[0].event_id  # the same command: sent once


async def test_a_system_message_never_reaches_the_bot_or_the_agent() -> None:
    world = World()
    notice = {"body": "El código de seguridad cambió", "type": "security"}
    assert await world.says(CUSTOMER, None, message_type="system", system=notice) == []
    code = await world.active_case()
    events = await world.says(CUSTOMER, None, message_type="system", system=notice)
    assert events == []
    await world.says(AGENT, "/fin", name="Agente")
    await world.rating_expires(code)  # the transcript goes at the rating's deadline
    [closed] = world.of(HandoffClosed)
    notes = [line.text for line in closed.transcript if line.author == "system"]
    assert notes == ["[aviso de WhatsApp] El código de seguridad cambió"]
    assert closed.case_code == code


async def test_an_integration_asks_for_a_human_for_a_phone_less_customer() -> None:
    world = World()
    await world.says(None, "Hola", **ANA)
    command = HandoffRequestCommand(customer_user_id=BSUID, reason="crm")
    outcome = await world.core.on_request(world.repo, command)
    [requested] = [e for e in outcome.events if isinstance(e, HandoffRequested)]
    assert requested.trigger == "command" and requested.customer.username == "ana"
    assert "le avisé" in body(world.sends(BSUID, outcome.events)[0])
    nobody = await world.core.on_request(world.repo, HandoffRequestCommand(customer_phone="x"))
    assert nobody.events == []


async def test_the_identity_change_of_a_stranger_is_ignored() -> None:
    world = World()
    change = identity_changed(
        "user_changed_user_id", Identity(user_id=BSUID), Identity(user_id=NEW_BSUID)
    )
    assert await world.changes(change) == []
    assert world.repo.conversations == {}


async def test_a_new_bsuid_keeps_the_phone() -> None:
    world = World()
    await world.says(CUSTOMER, "Hola", user_id=BSUID)
    previous, current = Identity(phone=CUSTOMER, user_id=BSUID), Identity(user_id=NEW_BSUID)
    await world.changes(identity_changed("user_id_update", previous, current, at=world.clock.now))
    conv = world.repo.conversations[BSUID]
    assert (conv.phone, conv.user_id) == (CUSTOMER, NEW_BSUID)
    world.clock.advance(days=1)
    events = await world.says(CUSTOMER, "Hola")  # the phone alone, after the change
    assert world.sends(CUSTOMER, events) and len(world.repo.conversations) == 1
