"""Coexistence: people at the business also answer from the WhatsApp Business app on the same
number, and Meta echoes each message they send there (``MessageEcho``, webhook field
``smb_message_echoes``).

Meta echoes only what the app or a linked device sent, never what went through the Cloud API
(its smb_message_echoes reference: "messages sent via the WhatsApp Business app or a companion
device"), so an echo is never one of Mensajero's own messages and nothing of it is sent again.
An echo means a person is talking to that customer: the bot stays quiet for them for a while
(``echo_quiet_seconds`` of the profile, else ``HANDOFF_ECHO_QUIET_SECONDS``; each echo starts it
again), an open case gets the echo in its transcript, and the agent of an active case is told.
"""

from __future__ import annotations

import logging
from datetime import datetime

from handoff.content import aware, describe
from handoff.delivery import to_agent
from handoff.identities import conversation_of, display_name
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.relays import keep_active
from handoff.repository import Conversation, Line
from handoff.router import one_line
from handoff.texts import say
from shared.events import TextContent
from shared.phone import maybe_e164
from shared.signals import MessageEcho

log = logging.getLogger("mensajero.handoff")


def quiet(conv: Conversation, now: datetime) -> bool:
    """Whether the bot leaves the customer alone now (someone answered from the app)."""
    return conv.bot_quiet_until is not None and now < conv.bot_quiet_until


async def on_echo(turn: Turn, echo: MessageEcho) -> None:
    config, repo, out = turn.config, turn.repo, turn.out
    if config.is_agent(maybe_e164(echo.customer.phone)):
        return  # the business app wrote to one of the agents: not a customer's conversation
    profile = config.profiles.for_number(echo.phone_number_id)
    # When the person wrote (a late webhook quiets the bot less), never later than now.
    at = min(aware(echo.timestamp), out.now)
    conv = await conversation_of(turn, profile, echo.customer, echo.phone_number_id, at)
    if conv is None:
        log.warning("an echo to nobody (no phone, no BSUID) ignored: %s", echo.wamid)
        return
    until = at + config.echo_quiet_for(options_for(profile))
    if conv.bot_quiet_until is None or until > conv.bot_quiet_until:
        conv.bot_quiet_until = until
    said = describe(echo)
    line = Line(at, "agent", say(profile, "handoff.transcript.echo", text=said), conv.case_code)
    await repo.add_line(conv.customer, line)
    case = await repo.get_case(conv.case_code) if conv.case_code else None
    if case is not None and case.state == "active" and case.agent is not None:
        text = say(
            profile,
            "handoff.agent.echo",
            code=case.code,
            name=display_name(conv),
            text=one_line(said, 300),
        )
        await to_agent(turn, case.agent, TextContent(body=text), case, conv, label="echo")
        await keep_active(turn, case)
    await repo.save_conversation(conv)
