"""A case moves from one agent to another: ``/pasar <code> <agent>``, or a colleague takes a
case whose customer waited too long for an answer (``handoff.reply_timeout``).

The new agent is told who the customer is (by the alert template when their 24-hour window is
closed: ``delivery.to_agent``), the previous one is told, the customer reads who goes on with
them, and the transcript keeps the move (``transfers``: who handled what).
"""

from __future__ import annotations

from typing import Literal

from handoff.availability import agent_name, find_agent, roster
from handoff.delivery import tell, to_agent, to_customer
from handoff.identities import handle
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.repository import Agent, Case, Conversation, Line, Transfer
from handoff.router import Command
from handoff.texts import say
from shared.events import TextContent
from shared.profiles import CompanyProfile
from shared.window import window_open

TransferReason = Literal["transfer", "reply_timeout"]
USAGE = "/pasar <código> <agente>"


async def on_transfer(turn: Turn, profile: CompanyProfile, agent: Agent, command: Command) -> None:
    """``/pasar <code> <agent>``: the case's agent hands it to a colleague."""
    out, phone = turn.out, agent.phone
    if not command.code or not command.text:
        tell(out, phone, say(profile, "handoff.agent.missing_code", usage=USAGE), "pasar-usage")
        return
    case = await turn.repo.get_case(command.code)
    code = command.code
    if case is None:
        tell(out, phone, say(profile, "handoff.agent.unknown_case", code=code), "pasar-uc")
        return
    profile = turn.config.profiles.by_id(case.profile_id)
    target = find_agent(turn.config, profile, command.text)
    if case.state == "closed":
        reply = say(profile, "handoff.agent.case_closed", code=code)
    elif case.state == "queued":
        reply = say(profile, "handoff.agent.transfer_not_active", code=code)
    elif case.agent != phone:
        reply = say(profile, "handoff.agent.case_not_yours", code=code)
    elif target is None:
        agents = roster(turn.config, profile)
        reply = say(profile, "handoff.agent.unknown_agent", agent=command.text, agents=agents)
    elif target == phone:
        reply = say(profile, "handoff.agent.taken_by_you", code=code)
    else:
        conv = await turn.repo.get_conversation(case.customer)
        assert conv is not None
        await transfer_case(turn, case, conv, agent, target, "transfer")
        return
    tell(out, phone, reply, "pasar-refused")


async def transfer_case(
    turn: Turn, case: Case, conv: Conversation, acting: Agent, to: str, reason: TransferReason
) -> None:
    """Move active ``case`` to agent ``to``. ``acting``: who asked (the case's agent for a
    transfer, the new agent when they take it over); the caller saves them."""
    repo, out = turn.repo, turn.out
    profile = turn.config.profiles.by_id(case.profile_id)
    assert case.agent is not None
    before = case.agent
    case.agent, case.last_activity_at = to, out.now
    await repo.save_case(case)
    await repo.add_transfer(Transfer(case.code, before, to, out.now, reason))
    await repo.take_offer(case.code)  # an offer to the others is void now
    await _reassign(turn, acting, before, to, case.code)
    names = {"from_agent": agent_name(profile, before), "to_agent": agent_name(profile, to)}
    key = (
        "handoff.transcript.transferred"
        if reason == "transfer"
        else "handoff.transcript.taken_over"
    )
    await repo.add_line(
        conv.customer, Line(out.now, "system", say(profile, key, **names), case.code)
    )
    values = {"code": case.code, "name": conv.name or "-", "phone": handle(conv), **names}
    if reason == "transfer":
        briefing = say(
            profile,
            "handoff.agent.transferred_to_you",
            **values,
            last_messages=await _recent(turn, profile, conv),
        )
        await to_agent(turn, to, TextContent(body=briefing), case, conv, label="transferred")
        tell(out, before, say(profile, "handoff.agent.transferred", **values), "transfer-done")
    else:
        text = say(profile, "handoff.agent.taken_over", **values)
        await to_agent(turn, before, TextContent(body=text), case, conv, label="taken-over")
    if window_open(conv.last_inbound_at, out.now):
        name = options_for(profile).agent_names.get(to) or say(profile, "handoff.customer.someone")
        to_customer(out, conv, say(profile, "handoff.customer.transferred", agent=name), "moved")
    out.fact("transferred", reason)


async def _reassign(turn: Turn, acting: Agent, before: str, to: str, code: str) -> None:
    """The new agent is on the case now; the previous one no longer."""
    for phone in (before, to):
        agent = acting if phone == acting.phone else await turn.repo.get_agent(phone)
        if phone == to:
            agent.current_case = code
        elif agent.current_case == code:
            agent.current_case = None
        if agent is not acting:
            await turn.repo.save_agent(agent)


async def _recent(turn: Turn, profile: CompanyProfile, conv: Conversation) -> str:
    lines = await turn.repo.last_lines(conv.customer, options_for(profile).last_messages)
    shown = [f"› {line.text}" for line in lines if line.author in ("customer", "agent")]
    return "\n".join(shown) or say(profile, "handoff.agent.notification_no_messages")
