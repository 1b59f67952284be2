"""Sending for a case: the commands, the templates, and the one step every use case shares:
send now, or hold until the recipient's 24-hour window opens. And what the sender reports back.

Meta delivers a free-form message only within 24 hours of the recipient's last message to the
business (``shared.window``). Outside it, :func:`send_or_hold` keeps the command until they
write again (``repository.hold``; what they write releases it, before anything new) and, the
first time, reaches them with a template Meta allows: the claim alert to an agent, the
re-engagement template to a customer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from handoff.identities import address, display_name, handle
from handoff.options import HandoffOptions, options_for
from handoff.outcome import Outcome, Turn
from handoff.repository import Case, Conversation, Repository, SendRecord
from handoff.router import CLAIM_PAYLOAD_PREFIX, menu_content, one_line
from handoff.texts import say
from shared.events import (
    MessageFailed,
    MessageSent,
    OutboundContent,
    SendMessage,
    TemplateContent,
    TextContent,
)
from shared.profiles import CompanyProfile
from shared.window import window_open

log = logging.getLogger("mensajero.handoff")

Role = Literal["agent", "customer"]


def new_command(
    out: Outcome,
    to: str,
    content: OutboundContent,
    label: str,
    *,
    fallback: TemplateContent | None = None,
) -> SendMessage:
    """A send command of this outcome (its id from the source event and ``label``), unpublished."""
    return SendMessage(
        event_id=out.next_id(label),
        to=to,
        content=content,
        fallback_template=fallback,
        origin="handoff",
        correlation_id=out.source_id,
    )


def send(
    out: Outcome,
    to: str,
    content: OutboundContent,
    label: str,
    *,
    fallback: TemplateContent | None = None,
) -> SendMessage:
    """A send command, published with the outcome."""
    command = new_command(out, to, content, label, fallback=fallback)
    out.publish(command)
    return command


def send_record(
    command: SendMessage, code: str, role: Role, source_wamid: str | None = None
) -> SendRecord:
    """The record of a send command for case ``code``: maps its wamid back to the case."""
    return SendRecord(
        command.event_id, code, command.to, role, source_wamid, body=command.model_dump_json()
    )


def to_customer(out: Outcome, conv: Conversation, text: str, label: str) -> None:
    send(out, address(conv), TextContent(body=text), label)


def tell(out: Outcome, phone: str, text: str, label: str) -> None:
    """Answer an agent who just wrote (their window is open)."""
    send(out, phone, TextContent(body=text), label)


def send_menu(out: Outcome, profile: CompanyProfile, conv: Conversation) -> None:
    send(out, address(conv), menu_content(profile), "menu")


def readdressed(conv: Conversation, held: list[SendMessage]) -> list[SendMessage]:
    """Sends held for the customer go where they are now (they may have changed number)."""
    to = address(conv)
    return [c if c.to == to else c.model_copy(update={"to": to}) for c in held]


def customer_template(options: HandoffOptions, conv: Conversation) -> TemplateContent:
    """The re-engagement template: what reaches a customer outside their window."""
    name = one_line(conv.name or "", 60) or "👋"
    return TemplateContent(
        name=options.customer_template.name,
        language=options.customer_template.language,
        components=[{"type": "body", "parameters": [{"type": "text", "text": name}]}],
    )


def agent_alert(
    options: HandoffOptions, case: Case, conv: Conversation, last: str
) -> TemplateContent:
    """The claim alert: what reaches an agent outside their window; its button claims the case."""
    who = f"#{case.code} {conv.name or ''} ({handle(conv)})"
    button = {"type": "payload", "payload": CLAIM_PAYLOAD_PREFIX + case.code}
    return TemplateContent(
        name=options.agent_template.name,
        language=options.agent_template.language,
        components=[
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": one_line(who, 200)},
                    {"type": "text", "text": one_line(last or "-", 200)},
                ],
            },
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [button]},
        ],
    )


async def send_or_hold(
    turn: Turn,
    command: SendMessage,
    case: Case,
    *,
    last_inbound_at: datetime | None,
    hold_for: str,
    reengage: Callable[[], Awaitable[None]],
) -> bool:
    """Publish ``command`` when its recipient wrote within 24 hours (``last_inbound_at``); else
    hold it until ``hold_for`` writes and, if nothing was held for them yet, ``reengage`` them.
    True when it goes now."""
    if window_open(last_inbound_at, turn.out.now):
        turn.out.publish(command)
        return True
    await hold(turn.repo, command, case, hold_for, reengage)
    return False


async def hold(
    repo: Repository,
    command: SendMessage,
    case: Case,
    hold_for: str,
    reengage: Callable[[], Awaitable[None]],
) -> None:
    if await repo.hold(hold_for, case.code, command):
        await reengage()


async def to_agent(
    turn: Turn,
    phone: str,
    content: OutboundContent,
    case: Case,
    conv: Conversation,
    *,
    label: str,
    source_wamid: str | None = None,
) -> None:
    """Send to an agent now when their window is open; else hold it and alert them."""
    agent = await turn.repo.get_agent(phone)
    command = new_command(turn.out, phone, content, label)
    await turn.repo.add_outgoing(send_record(command, case.code, "agent", source_wamid))
    last = content.body if isinstance(content, TextContent) else ""

    async def alert() -> None:
        await alert_agent(turn, phone, case, conv, last)

    await send_or_hold(
        turn, command, case, last_inbound_at=agent.last_inbound_at, hold_for=phone, reengage=alert
    )


async def alert_agent(turn: Turn, phone: str, case: Case, conv: Conversation, last: str) -> None:
    options = options_for(turn.config.profiles.by_id(case.profile_id))
    alert = send(turn.out, phone, agent_alert(options, case, conv, last), "alert")
    await turn.repo.add_outgoing(send_record(alert, case.code, "agent"))


# ------------------------------------------------------------------ what the sender reports


async def on_sent(repo: Repository, sent: MessageSent) -> bool:
    """Learn the wamid of a send of ours (a later quote or reaction names it).

    A command can have two sends: its own, and its fallback template's when Meta said (after
    accepting the first) that the window was closed. The fallback's wamid is the one the person
    saw and may quote; the first never overrides it, whatever the order.
    """
    return await repo.set_wamid(sent.command_id, sent.wamid, replace=sent.used_fallback_template)


async def on_failed(turn: Turn, failed: MessageFailed) -> None:
    """A send of ours failed: hold it again for an agent whose window Meta says is closed (and
    alert them), or tell the case's agent that the customer did not get it."""
    repo, out = turn.repo, turn.out
    record = await repo.outgoing_by_command(failed.command_id)
    if record is None or record.body is None:
        return
    case = await repo.get_case(record.case_code)
    conv = await repo.get_conversation(case.customer) if case else None
    if case is None or conv is None or case.state == "closed":
        return
    command = SendMessage.model_validate_json(record.body)
    if record.role == "customer":
        if case.agent is not None:
            text = say(
                turn.config.profiles.by_id(case.profile_id),
                "handoff.agent.delivery_failed",
                code=case.code,
                name=display_name(conv),
                reason=failed.reason,
            )
            await to_agent(turn, case.agent, TextContent(body=text), case, conv, label="failed")
        return
    if failed.reason_code != "window_closed" or isinstance(command.content, TemplateContent):
        log.warning("a message to an agent failed: %s", failed.reason)
        return
    # The agent's window is closed after all: keep the message and alert them by template.
    agent = await repo.get_agent(record.recipient)
    agent.last_inbound_at = None
    await repo.save_agent(agent)
    again = command.model_copy(update={"event_id": out.next_id("again")})
    await repo.add_outgoing(send_record(again, case.code, "agent", record.source_wamid))
    last = command.content.body if isinstance(command.content, TextContent) else ""

    async def alert() -> None:
        await alert_agent(turn, record.recipient, case, conv, last)

    await hold(repo, again, case, record.recipient, alert)
