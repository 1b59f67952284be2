"""Customers and the bot: a customer's message goes to the bot, to the agent of their case, or
ends the case; a request for a human (the menu's button, a phrase, or an integration's
``handoff.request``) opens one."""

from __future__ import annotations

import logging

from handoff.cases import close_case, open_case
from handoff.coexistence import quiet
from handoff.content import describe, sent_at
from handoff.delivery import readdressed, send_menu, to_customer
from handoff.identities import conversation_of
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.ratings import on_rating_answer
from handoff.relays import relay_to_agent
from handoff.reply_timeout import watch
from handoff.repository import Conversation, Line
from handoff.router import menu_choice, wants_end, wants_human
from handoff.texts import say
from shared.events import BotMessage, HandoffRequestCommand, Identity, InboundMessage
from shared.phone import maybe_e164
from shared.profiles import CompanyProfile

log = logging.getLogger("mensajero.handoff")


async def on_customer_message(turn: Turn, profile: CompanyProfile, msg: InboundMessage) -> None:
    conv = await _conversation_of(turn, profile, msg)
    if conv is None:
        log.warning("a message from nobody (no phone, no BSUID) ignored: %s", msg.wamid)
        return
    repo = turn.repo
    if await on_rating_answer(turn, conv, msg):
        await repo.save_conversation(conv)
        return
    case = await repo.get_case(conv.case_code) if conv.case_code else None
    if conv.state != "bot" and (case is None or case.state == "closed"):
        log.warning("conversation pointed at no open case; back to the bot: %s", conv.customer)
        conv.state, conv.case_code, case = "bot", None, None
    if case is None:
        if quiet(conv, turn.out.now):
            log.info("the bot is quiet for %s until %s", conv.customer, conv.bot_quiet_until)
        else:
            await _to_the_bot(turn, profile, conv, msg)
    elif wants_end(msg.text, options_for(profile).end_phrases):
        await close_case(turn, case, conv, "customer")
    elif case.state == "queued":
        if _asks_for_human(profile, msg):
            text = say(profile, "handoff.customer.already_queued")
            to_customer(turn.out, conv, text, "already-queued")
    else:
        await relay_to_agent(turn, case, conv, msg)
        await watch(turn, case)  # the customer waits for the agent's answer
    await repo.save_conversation(conv)


async def _conversation_of(
    turn: Turn, profile: CompanyProfile, msg: InboundMessage
) -> Conversation | None:
    """The customer's conversation (new on their first message), updated with who they are and
    that they wrote now: what waited for their window goes first, and the transcript grows."""
    at = sent_at(msg)
    conv = await conversation_of(turn, profile, msg.sender, msg.phone_number_id, at)
    if conv is None:
        return None
    conv.phone_number_id = msg.phone_number_id
    if conv.last_inbound_at is None or at > conv.last_inbound_at:
        conv.last_inbound_at = at
    turn.out.events.extend(readdressed(conv, await turn.repo.take_held(conv.customer)))
    await turn.repo.add_line(conv.customer, Line(at, "customer", describe(msg), conv.case_code))
    return conv


def _asks_for_human(profile: CompanyProfile, msg: InboundMessage) -> bool:
    choice = menu_choice(profile, msg.reply.id if msg.reply else None)
    if choice is not None:
        return choice.action == "handoff"
    return wants_human(msg.text, profile.handoff_phrases)


async def _to_the_bot(
    turn: Turn, profile: CompanyProfile, conv: Conversation, msg: InboundMessage
) -> None:
    """No case: a request for a human opens one; else the bot answers (the profile's menu, or
    the external bot through ``bot.message``)."""
    out = turn.out
    choice = menu_choice(profile, msg.reply.id if msg.reply else None)
    if choice is not None and choice.action == "handoff":
        await open_case(turn, profile, conv, "button")
    elif choice is None and wants_human(msg.text, profile.handoff_phrases):
        await open_case(turn, profile, conv, "phrase")
    elif turn.config.bot_mode == "external":
        out.publish(
            BotMessage(
                event_id=out.next_id("bot"),
                message=msg,
                profile_id=profile.id,
                correlation_id=out.source_id,
            )
        )
    elif choice is not None:
        to_customer(out, conv, choice.reply or profile.menu.body, "menu-reply")
    elif msg.reaction is None:
        send_menu(out, profile, conv)


async def on_request(turn: Turn, command: HandoffRequestCommand) -> None:
    """An integration asks for a human on a customer's behalf (by phone or BSUID)."""
    profile = turn.config.profiles.for_number(command.phone_number_id)
    who = Identity(phone=maybe_e164(command.customer_phone), user_id=command.customer_user_id)
    number = command.phone_number_id or (profile.phone_number_ids or [""])[0]
    conv = await conversation_of(turn, profile, who, number, turn.out.now)
    if conv is None:
        log.warning("handoff.request without a readable phone or a BSUID ignored")
        return
    if conv.state == "bot":
        await open_case(turn, profile, conv, "command")
    await turn.repo.save_conversation(conv)
