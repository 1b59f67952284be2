"""Agents' messages and commands: an agent writes from WhatsApp to a case (quoting, ``#code``,
or their current case), or commands (``/lista``, ``/tomar``, ``/fin``, ``/bot``, ``/ayuda``;
``/pasar``, ``/pausa``, ``/vuelvo`` and ``/r`` live in their own modules, see MORE_COMMANDS).

Answering is enough: a message for no case in particular claims the one case waiting; with
several it could be for, it is kept while the agent taps its case in a list (``drafts``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from handoff import availability, canned, drafts, transfers
from handoff.cases import Farewell, claim_case, close_case
from handoff.content import agent_content, sent_at
from handoff.delivery import tell
from handoff.identities import handle
from handoff.outcome import Turn
from handoff.relays import relay_to_customer
from handoff.reply_timeout import take_offered
from handoff.repository import Agent, Case
from handoff.router import (
    CHOICE_PAYLOAD_PREFIX,
    CLAIM_PAYLOAD_PREFIX,
    Addressed,
    Chosen,
    Command,
    Plain,
    UnknownCommand,
    parse_agent_input,
)
from handoff.texts import say
from shared.events import InboundMessage, OutboundContent, ReactionContent, TextContent
from shared.meta_limits import TEXT_BODY_MAX
from shared.profiles import CompanyProfile

# What an agent's message may carry that is not relayed content.
NOT_CONTENT = ("text", "interactive", "button")

CommandUse = Callable[[Turn, CompanyProfile, Agent, Command], Awaitable[None]]
# Commands handled by their own modules: (turn, profile, agent, command); the caller saves agent.
MORE_COMMANDS: dict[str, CommandUse] = {
    "pasar": transfers.on_transfer,
    "pausa": availability.pause,
    "vuelvo": availability.resume,
    "r": canned.on_canned,
}


class QuoteNotKnownYet(Exception):
    """An agent quoted a message whose wamid the sender has not reported yet: try again soon."""


async def on_agent_message(turn: Turn, phone: str, msg: InboundMessage) -> None:
    repo = turn.repo
    agent = await repo.get_agent(phone)
    at = sent_at(msg)
    if agent.last_inbound_at is None or at > agent.last_inbound_at:
        agent.last_inbound_at = at
    # Their window is open again: what waited for it goes now, before anything new.
    turn.out.events.extend(await repo.take_held(phone))
    payload = msg.reply.id if msg.reply is not None else None
    text = None if msg.reaction is not None else msg.text
    if payload and payload.startswith((CLAIM_PAYLOAD_PREFIX, CHOICE_PAYLOAD_PREFIX)):
        text = None  # the alert's button or a list's row: its title is not a message
    profile = turn.config.profiles.for_number(msg.phone_number_id)
    match parse_agent_input(text, payload):
        case Command() as command:
            await _command(turn, profile, agent, command)
        case UnknownCommand(command=name):
            help_text = say(profile, "handoff.agent.help")
            reply = say(profile, "handoff.agent.unknown_command", command=name, help=help_text)
            tell(turn.out, phone, reply, "unknown-command")
        case Addressed(code=code, text=addressed):
            target = await repo.get_case(code)
            if target is None:
                reply = say(profile, "handoff.agent.unknown_case", code=code)
                tell(turn.out, phone, reply, "unknown-case")
            else:
                await _to_case(turn, agent, target, msg, addressed)
        case Plain(text=plain):
            target = await _case_of(turn, agent, msg)
            if target is None:
                await _unaddressed(turn, profile, agent, msg, plain)
            else:
                await _to_case(turn, agent, target, msg, plain)
        case Chosen(code=code):
            await _chosen(turn, profile, agent, code)
    await repo.save_agent(agent)


async def _unaddressed(
    turn: Turn, profile: CompanyProfile, agent: Agent, msg: InboundMessage, text: str
) -> None:
    """A message for none of the agent's cases: the one case waiting takes it (the first agent
    to claim it wins); with several it could be for, it is kept while the agent chooses, and so
    is every later one until they do."""
    repo = turn.repo
    content = None if msg.reaction is not None else agent_content(msg, text)
    cases = await drafts.choices(turn, agent)
    kept = await repo.drafts_of(agent.phone) if content is not None else []
    if content is not None and not kept and len(cases) == 1 and cases[0].state == "queued":
        if await _to_case(turn, agent, cases[0], msg, text) is not None:
            return
        cases = await drafts.choices(turn, agent)  # someone was first (and the agent told)
    if content is not None and cases:
        await drafts.keep(turn, profile, agent, msg, text, cases)
        return
    listing = await _listing(turn, profile, agent, await repo.open_cases())
    reply = say(profile, "handoff.agent.which_case", cases=listing)
    tell(turn.out, agent.phone, reply, "which-case")


async def _chosen(turn: Turn, profile: CompanyProfile, agent: Agent, code: str) -> None:
    """The agent tapped a case in the list: what they kept goes to it, in order (claiming it if
    it waits). Taken by someone else meanwhile: they are told and asked again."""
    repo = turn.repo
    case = await repo.get_case(code)
    if case is None:
        tell(turn.out, agent.phone, say(profile, "handoff.agent.unknown_case", code=code), "uc")
        return
    kept = await repo.drafts_of(agent.phone)
    if not kept:  # sent or expired already: the tap claims the case, as /tomar does
        await _to_case(turn, agent, case, None, "")
        return
    if await _to_case(turn, agent, case, kept[0].message, kept[0].text) is None:
        cases = await drafts.choices(turn, agent)
        if cases:
            await drafts.offer(turn, profile, agent, cases, count=len(kept))
        return
    await repo.take_drafts(agent.phone)
    await repo.cancel_timers(agent.phone)
    for draft in kept[1:]:
        current = await repo.get_case(code)
        assert current is not None
        await _to_case(turn, agent, current, draft.message, draft.text)


async def _case_of(turn: Turn, agent: Agent, msg: InboundMessage) -> Case | None:
    """The case a plain message is for: the one of the message it quotes (or reacts to), else
    the agent's current case, else their only active one."""
    repo = turn.repo
    quoted = msg.reaction.message_id if msg.reaction is not None else None
    if quoted is None and msg.context is not None:
        quoted = msg.context.message_id
    if quoted:
        # Ask what is still unmapped first: a wamid learnt in between is then found below.
        pending = turn.out.wait_for_quotes and await repo.awaiting_wamid(agent.phone)
        record = await repo.outgoing_by_wamid(quoted)
        if record is not None and record.role == "agent":
            quoted_case = await repo.get_case(record.case_code)
            if quoted_case is not None:
                return quoted_case
        elif record is None and pending:
            raise QuoteNotKnownYet(quoted)
    return await canned.active_case_of(repo, agent)


async def _listing(turn: Turn, profile: CompanyProfile, agent: Agent, cases: list[Case]) -> str:
    lines = []
    for case in cases:
        conv = await turn.repo.get_conversation(case.customer)
        values = {
            "code": case.code,
            "name": (conv.name if conv else None) or "-",
            "phone": handle(conv) if conv else "-",
        }
        if case.state == "queued":
            lines.append(say(profile, "handoff.agent.list_line_queued", **values))
        else:
            mine = case.agent == agent.phone
            who = say(profile, "handoff.agent.list_you" if mine else "handoff.agent.list_other")
            lines.append(say(profile, "handoff.agent.list_line_active", who=who, **values))
    return "\n".join(lines) or say(profile, "handoff.agent.no_cases")


async def _command(turn: Turn, profile: CompanyProfile, agent: Agent, command: Command) -> None:
    out, phone = turn.out, agent.phone
    if command.name == "ayuda":
        tell(out, phone, say(profile, "handoff.agent.help"), "help")
    elif command.name == "lista":
        cases = await _listing(turn, profile, agent, await turn.repo.open_cases())
        tell(out, phone, say(profile, "handoff.agent.list", cases=cases), "list")
    elif command.name == "tomar":
        await _take(turn, profile, agent, command)
    elif command.name in MORE_COMMANDS:
        await MORE_COMMANDS[command.name](turn, profile, agent, command)
    else:  # fin, bot
        await _end(turn, profile, agent, command)


async def _take(turn: Turn, profile: CompanyProfile, agent: Agent, command: Command) -> None:
    """``/tomar <code> [first words]``."""
    if not command.code:
        reply = say(profile, "handoff.agent.missing_code", usage="/tomar <código>")
        tell(turn.out, agent.phone, reply, "missing-code")
        return
    case = await turn.repo.get_case(command.code)
    if case is None:
        reply = say(profile, "handoff.agent.unknown_case", code=command.code)
        tell(turn.out, agent.phone, reply, "unknown-case")
        return
    if await take_offered(turn, agent, case, command.text):  # its customer waited too long
        return
    await _to_case(turn, agent, case, None, command.text)


async def _end(turn: Turn, profile: CompanyProfile, agent: Agent, command: Command) -> None:
    """``/fin [code]`` (the customer is told goodbye) or ``/bot [code]`` (handed back)."""
    repo, out, phone = turn.repo, turn.out, agent.phone
    code = command.code or agent.current_case
    if code is None:
        mine = [c for c in await repo.open_cases() if c.agent == phone]
        code = mine[0].code if len(mine) == 1 else None
    if code is None:
        tell(out, phone, say(profile, "handoff.agent.no_case_to_close"), "no-case")
        return
    case = await repo.get_case(code)
    if case is None:
        tell(out, phone, say(profile, "handoff.agent.unknown_case", code=code), "uc")
    elif case.state == "closed":
        tell(out, phone, say(profile, "handoff.agent.case_closed", code=code), "cc")
        if agent.current_case == code:
            agent.current_case = None
    elif case.state == "active" and case.agent != phone:
        tell(out, phone, say(profile, "handoff.agent.case_not_yours", code=code), "not-yours")
    else:
        conv = await repo.get_conversation(case.customer)
        assert conv is not None
        farewell: Farewell = "bot" if command.name == "bot" else "agent"
        await close_case(turn, case, conv, "agent", acting=agent, farewell=farewell)
        await repo.save_conversation(conv)


async def _to_case(
    turn: Turn, agent: Agent, case: Case, msg: InboundMessage | None, text: str
) -> Case | None:
    """An agent's message (or claim: ``msg`` None) for one case: claim it if queued, then relay.
    The case, now the agent's; None when it went nowhere (the agent was told why)."""
    profile = turn.config.profiles.by_id(case.profile_id)
    out, phone = turn.out, agent.phone
    if case.state == "closed":
        tell(out, phone, say(profile, "handoff.agent.case_closed", code=case.code), "case-closed")
        return None
    if case.state == "active" and case.agent != phone:
        key = "handoff.agent.taken_by_other" if msg is None else "handoff.agent.case_not_yours"
        tell(out, phone, say(profile, key, code=case.code), "not-yours")
        return None
    content: OutboundContent | None
    if msg is None:
        content = TextContent(body=text[:TEXT_BODY_MAX]) if text else None
    elif msg.reaction is not None:
        content = await _reaction(turn, msg)
    else:
        content = agent_content(msg, text)
        if content is None and msg.message_type not in NOT_CONTENT:
            reply = say(profile, "handoff.agent.not_relayable", kind=msg.message_type)
            tell(out, phone, reply, "not-relayable")
            return None
    if case.state == "queued":
        claimed = await claim_case(turn, agent, case, greet=content is None)
        if claimed is None:
            return None
        case = claimed
    elif content is None:
        tell(out, phone, say(profile, "handoff.agent.taken_by_you", code=case.code), "yours")
    agent.current_case = case.code
    if content is not None:
        await relay_to_customer(turn, case, content, msg, text)
    return case


async def _reaction(turn: Turn, msg: InboundMessage) -> OutboundContent:
    """An agent's reaction lands on the customer's own message it was relayed from."""
    assert msg.reaction is not None
    emoji = msg.reaction.emoji or ""
    record = await turn.repo.outgoing_by_wamid(msg.reaction.message_id)
    if record is not None and record.source_wamid:
        return ReactionContent(message_id=record.source_wamid, emoji=emoji)
    return TextContent(body=emoji or "👍")
