"""Handoff's entry points: one per thing that happens to it, each returning what to publish.

Each builds the :class:`~handoff.outcome.Outcome` of one event over the repository port, so the
bus handlers run them in the event's transaction (``handoff.handlers``) and the unit tests on
the in-memory repository. The use cases themselves live by actor and lifecycle:
``customers`` (customers and the bot), ``agents`` (agents' messages and commands), ``cases``
(open, claim, close), ``relays`` (both ways), ``drafts`` (an agent's message kept while they
choose its case), ``timers``, ``identity_changes`` (a customer's new phone or BSUID, and
WhatsApp's system messages), ``coexistence`` (echoes of the WhatsApp Business app), and
``delivery`` (the shared "send now or hold until the window opens" step, and what the sender
reports back). ``identities`` says which conversation an identifier names.
Agents' tools have a module each: ``transfers`` (``/pasar``), ``availability`` (``/pausa``,
``/vuelvo``, who is offered new cases, agents' names), ``canned`` (``/r``), ``reply_timeout``
(a customer waiting too long is offered to the others), ``ratings`` (the customer's rating at
the close) and ``closing`` (what ``handoff.closed`` carries to the transcript mail).
"""

from __future__ import annotations

from datetime import datetime

from handoff import agents, coexistence, customers, delivery, drafts, identity_changes, timers
from handoff.config import HandoffConfig
from handoff.outcome import Outcome, Turn
from handoff.repository import Repository
from shared.events import (
    HandoffRequestCommand,
    InboundMessage,
    MessageFailed,
    MessageSent,
)
from shared.phone import maybe_e164
from shared.signals import IdentityChanged, MessageEcho
from shared.timers import Timer


async def on_inbound(
    config: HandoffConfig,
    repo: Repository,
    msg: InboundMessage,
    *,
    now: datetime,
    wait_for_quotes: bool = False,
) -> Outcome:
    """``wait_for_quotes``: raise :class:`agents.QuoteNotKnownYet` rather than guess the case
    of an agent's quote the sender has not reported yet."""
    out = Outcome(msg.event_id, now, wait_for_quotes=wait_for_quotes)
    turn = Turn(config, repo, out)
    sender = maybe_e164(msg.sender.phone)
    if msg.message_type == "system":  # WhatsApp's notice, not the person's words
        await identity_changes.on_system_message(turn, msg)
    elif sender is not None and config.is_agent(sender):
        await agents.on_agent_message(turn, sender, msg)
    else:
        profile = config.profiles.for_number(msg.phone_number_id)
        await customers.on_customer_message(turn, profile, msg)
    return out


async def on_request(
    config: HandoffConfig, repo: Repository, command: HandoffRequestCommand, *, now: datetime
) -> Outcome:
    out = Outcome(command.event_id, now)
    await customers.on_request(Turn(config, repo, out), command)
    return out


async def on_echo(
    config: HandoffConfig, repo: Repository, echo: MessageEcho, *, now: datetime
) -> Outcome:
    out = Outcome(echo.event_id, now)
    await coexistence.on_echo(Turn(config, repo, out), echo)
    return out


async def on_identity_changed(
    config: HandoffConfig, repo: Repository, change: IdentityChanged, *, now: datetime
) -> Outcome:
    out = Outcome(change.event_id, now)
    await identity_changes.on_identity_changed(Turn(config, repo, out), change)
    return out


async def on_failed(
    config: HandoffConfig, repo: Repository, failed: MessageFailed, *, now: datetime
) -> Outcome:
    out = Outcome(failed.event_id, now)
    await delivery.on_failed(Turn(config, repo, out), failed)
    return out


async def on_timer(
    config: HandoffConfig, repo: Repository, timer: Timer, *, now: datetime
) -> Outcome:
    out = Outcome(timer.source_id, now)
    if timer.kind == drafts.DRAFT_TIMER:  # an agent's drafts (subject: their phone)
        await drafts.on_expired(Turn(config, repo, out), timer.subject)
    else:  # a case's (subject: its code)
        await timers.on_timer(Turn(config, repo, out), timer)
    return out


async def on_sent(repo: Repository, sent: MessageSent) -> bool:
    return await delivery.on_sent(repo, sent)
