"""A case's lifecycle: opened (agents notified, or no agent, or after hours), claimed by one
agent, closed with its end reason (the customer back with the bot)."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from handoff.availability import available_agents
from handoff.closing import EndReason, publish_closed, transcript
from handoff.delivery import (
    agent_alert,
    send,
    send_menu,
    send_record,
    tell,
    to_agent,
    to_customer,
)
from handoff.identities import handle, identity
from handoff.options import HandoffOptions, options_for
from handoff.outcome import Turn
from handoff.ratings import ask_rating
from handoff.repository import Agent, Case, Conversation
from handoff.router import describe_opening, encode_code, is_open, next_opening
from handoff.texts import say
from shared.events import (
    HandoffClaimed,
    HandoffRequested,
    HandoffUnattended,
    TextContent,
)
from shared.profiles import CompanyProfile
from shared.window import window_open

UnattendedReason = Literal["no_agent", "after_hours", "timeout"]
Farewell = Literal["agent", "bot"]


# ------------------------------------------------------------------ opening


async def open_case(turn: Turn, profile: CompanyProfile, conv: Conversation, trigger: str) -> None:
    """A customer asked for a human (``trigger``: button, phrase, command). The caller saves
    ``conv``."""
    repo, out = turn.repo, turn.out
    code = encode_code(await repo.next_case_number())
    case = Case(
        code, conv.customer, conv.phone_number_id, profile.id, "queued", trigger, out.now, out.now
    )
    await repo.add_case(case)
    conv.state, conv.case_code = "queued", code
    if trigger != "command":
        await repo.adopt_last_line(conv.customer, code)
    out.publish(
        HandoffRequested(
            event_id=out.next_id("requested"),
            case_code=code,
            phone_number_id=conv.phone_number_id,
            customer=identity(conv),
            trigger=trigger,
            profile_id=profile.id,
            correlation_id=out.source_id,
        )
    )
    out.fact("requested", trigger)
    await _queue_or_turn_away(turn, profile, case, conv)


async def _queue_or_turn_away(
    turn: Turn, profile: CompanyProfile, case: Case, conv: Conversation
) -> None:
    out = turn.out
    options = options_for(profile)
    if not await available_agents(turn, profile):  # none configured, or all paused
        to_customer(out, conv, say(profile, "handoff.customer.no_agent"), "no-agent")
        await unattended(turn, profile, case, conv, "no_agent")
        await close_case(turn, case, conv, "no_agent")
        return
    if is_open(options.business_hours, profile.timezone, out.now):
        to_customer(out, conv, say(profile, "handoff.customer.queued"), "queued")
    else:
        opening = next_opening(options.business_hours, profile.timezone, out.now)
        sentence = (
            say(profile, "handoff.customer.next_open", when=describe_opening(opening))
            if opening
            else ""
        )
        text = say(profile, "handoff.customer.after_hours", next_open_sentence=sentence)
        to_customer(out, conv, text, "after-hours")
        await unattended(turn, profile, case, conv, "after_hours")
        if options.after_hours == "close":
            await close_case(turn, case, conv, "after_hours")
            return
    await _notify_agents(turn, profile, options, case, conv)
    await turn.repo.schedule(case.code, "queue", out.now + turn.config.queue_timeout_for(options))


async def _notify_agents(
    turn: Turn,
    profile: CompanyProfile,
    options: HandoffOptions,
    case: Case,
    conv: Conversation,
) -> None:
    """Every free agent gets the case: as text with the alert template as fallback when their
    window is open, else the alert template, whose button claims it."""
    repo, out = turn.repo, turn.out
    recent = await repo.last_lines(conv.customer, options.last_messages)
    lines = [line for line in recent if line.author == "customer"]
    listing = "\n".join(f"› {line.text}" for line in lines) or say(
        profile, "handoff.agent.notification_no_messages"
    )
    load = Counter(c.agent for c in await repo.open_cases() if c.state == "active")
    agents = await available_agents(turn, profile)
    free = [a for a in agents if load[a] < options.max_cases_per_agent] or agents
    body = say(
        profile,
        "handoff.agent.notification",
        code=case.code,
        name=conv.name or "-",
        phone=handle(conv),
        last_messages=listing,
    )
    template = agent_alert(options, case, conv, lines[-1].text if lines else "")
    for phone in free:
        agent = await repo.get_agent(phone)
        label = f"notify:{phone}"
        if window_open(agent.last_inbound_at, out.now):
            command = send(out, phone, TextContent(body=body), label, fallback=template)
        else:
            command = send(out, phone, template, label)
        await repo.add_outgoing(send_record(command, case.code, "agent"))


async def unattended(
    turn: Turn,
    profile: CompanyProfile,
    case: Case,
    conv: Conversation,
    reason: UnattendedReason,
) -> None:
    """Nobody can take the case: the notifier mails the profile (``handoff.unattended``)."""
    lines = await turn.repo.last_lines(conv.customer, options_for(profile).last_messages)
    turn.out.publish(
        HandoffUnattended(
            event_id=turn.out.next_id(f"unattended:{reason}"),
            case_code=case.code,
            customer=identity(conv),
            reason=reason,
            profile_id=profile.id,
            last_messages=transcript(lines),
            correlation_id=turn.out.source_id,
        )
    )


# ------------------------------------------------------------------ claiming


async def claim_case(turn: Turn, agent: Agent, case: Case, *, greet: bool) -> Case | None:
    """Atomically take a queued case. None (and the agent told why) when someone was first."""
    repo, out = turn.repo, turn.out
    profile = turn.config.profiles.by_id(case.profile_id)
    claimed = await repo.claim_case(case.code, agent.phone, out.now)
    if claimed is None:
        await _claim_lost(turn, profile, agent, case)
        return None
    conv = await repo.get_conversation(claimed.customer)
    assert conv is not None
    conv.state = "active"
    await repo.save_conversation(conv)
    await repo.cancel_timers(claimed.code)
    idle = turn.config.idle_timeout_for(options_for(profile))
    await repo.schedule(claimed.code, "idle", out.now + idle)
    agent.current_case = claimed.code
    wait = max((out.now - claimed.created_at).total_seconds(), 0.0)
    out.publish(
        HandoffClaimed(
            event_id=out.next_id("claimed"),
            case_code=claimed.code,
            customer=identity(conv),
            agent_phone=agent.phone,
            wait_seconds=wait,
            profile_id=profile.id,
            correlation_id=out.source_id,
        )
    )
    out.fact("claimed", "", wait)
    reply = await claimed_reply(turn, profile, claimed, conv)
    command = send(out, agent.phone, TextContent(body=reply), "claimed")
    await repo.add_outgoing(send_record(command, claimed.code, "agent"))
    if greet:
        text = say(profile, "handoff.customer.claimed", company=profile.name)
        to_customer(out, conv, text, "greet")
    return claimed


async def _claim_lost(turn: Turn, profile: CompanyProfile, agent: Agent, case: Case) -> None:
    current = await turn.repo.get_case(case.code)
    if current is not None and current.state == "active" and current.agent == agent.phone:
        agent.current_case = current.code
        reply = say(profile, "handoff.agent.taken_by_you", code=case.code)
    elif current is not None and current.state == "active":
        reply = say(profile, "handoff.agent.taken_by_other", code=case.code)
    else:
        reply = say(profile, "handoff.agent.case_closed", code=case.code)
    tell(turn.out, agent.phone, reply, "claim-lost")


async def claimed_reply(turn: Turn, profile: CompanyProfile, case: Case, conv: Conversation) -> str:
    """Who the case is, and what the customer wrote while waiting (the request itself was in
    the notification)."""
    reply = say(
        profile,
        "handoff.agent.claimed",
        help_line=say(profile, "handoff.agent.claimed_help"),
        code=case.code,
        name=conv.name or "-",
        phone=handle(conv),
    )
    lines = await turn.repo.case_lines(case.code)
    backlog = [line.text for line in lines if line.author == "customer"]
    if case.trigger != "command":
        backlog = backlog[1:]
    if backlog:
        listing = "\n".join(f"› {text}" for text in backlog)
        reply += "\n" + say(profile, "handoff.agent.claimed_backlog", lines=listing)
    return reply


# ------------------------------------------------------------------ closing

_CUSTOMER_FAREWELL = {
    "customer": "handoff.customer.ended_by_customer",
    "idle": "handoff.customer.idle_closed",
}
_AGENT_FAREWELL = {
    "agent": "handoff.agent.closed",
    "customer": "handoff.agent.closed_by_customer",
    "idle": "handoff.agent.idle_closed",
}


async def close_case(
    turn: Turn,
    case: Case,
    conv: Conversation,
    reason: EndReason,
    *,
    acting: Agent | None = None,
    farewell: Farewell = "agent",
) -> None:
    """Close a case and put the customer back with the bot. The caller saves ``conv``.

    ``acting``: the agent closing it (they are answering; their state is saved by the caller).
    ``farewell``: what the customer is told when an agent closes it ("bot": handed back).
    """
    repo, out = turn.repo, turn.out
    profile = turn.config.profiles.by_id(case.profile_id)
    case.state, case.end_reason, case.closed_at = "closed", reason, out.now
    await repo.save_case(case)
    conv.state, conv.case_code = "bot", None
    await repo.cancel_timers(case.code)
    out.fact("ended", reason)
    if case.agent is not None:
        await _release_agent(turn, case, acting)
    if reason in ("no_agent", "after_hours", "timeout"):
        if reason == "timeout":
            send_menu(out, profile, conv)
        return  # handoff.unattended already tells the notifier
    if reason == "agent":
        key = "handoff.customer.back_to_bot" if farewell == "bot" else "handoff.customer.closed"
    else:
        key = _CUSTOMER_FAREWELL[reason]
    to_customer(out, conv, say(profile, key), "closed")
    rated = await ask_rating(turn, profile, case, conv, reason)
    if not rated:
        send_menu(out, profile, conv)
    if case.agent is not None:
        text = say(profile, _AGENT_FAREWELL[reason], code=case.code)
        if acting is not None and acting.phone == case.agent:
            tell(out, case.agent, text, "closed-agent")
        else:
            content = TextContent(body=text)
            await to_agent(turn, case.agent, content, case, conv, label="closed-agent")
    if not rated:  # else handoff.closed waits for the rating (handoff.ratings)
        await publish_closed(turn, profile, case, conv)


async def _release_agent(turn: Turn, case: Case, acting: Agent | None) -> None:
    """The case's agent is no longer on it."""
    assert case.agent is not None
    if acting is not None and acting.phone == case.agent:
        if acting.current_case == case.code:
            acting.current_case = None
        return
    agent = await turn.repo.get_agent(case.agent)
    if agent.current_case == case.code:
        agent.current_case = None
        await turn.repo.save_agent(agent)
