"""A case does not rot: when the customer of an active case has waited longer than the reply
timeout (``HANDOFF_AGENT_REPLY_TIMEOUT_SECONDS``, a profile's ``agent_reply_timeout_seconds``)
for the agent's answer, the case is offered to the other available agents, and its agent is
told. The first colleague to ``/tomar`` it (or tap the alert's button) takes it over; if nobody
does, it stays with its agent.

The wait starts with the customer's first message after the claim, the agent's last answer or
the last transfer; a durable ``reply`` timer (``shared.timers``: once across replicas) is due at
its end, and each customer message relayed to the agent re-arms it for the wait it is part of.
"""

from __future__ import annotations

from datetime import datetime

from handoff.availability import agent_name, available_agents
from handoff.cases import claimed_reply
from handoff.delivery import tell, to_agent
from handoff.identities import handle
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.relays import relay_to_customer
from handoff.repository import Agent, Case, Repository
from handoff.texts import say
from handoff.transfers import transfer_case
from shared.events import TextContent
from shared.timers import Timer


async def waiting_since(repo: Repository, case: Case) -> datetime | None:
    """Since when the customer waits for an answer (None: they do not)."""
    since: datetime | None = None
    for line in await repo.case_lines(case.code):
        if line.author != "customer":
            since = None
        elif since is None and (case.claimed_at is None or line.at >= case.claimed_at):
            since = line.at
    return since


async def watch(turn: Turn, case: Case) -> None:
    """The customer wrote to the agent of ``case``: the reply timer is due at the end of the
    wait (unless that is past: it fired for this wait already)."""
    profile = turn.config.profiles.by_id(case.profile_id)
    timeout = turn.config.reply_timeout_for(options_for(profile))
    since = await waiting_since(turn.repo, case)
    if timeout is not None and since is not None and since + timeout > turn.out.now:
        await turn.repo.schedule(case.code, "reply", since + timeout)


async def on_reply_timer(turn: Turn, timer: Timer) -> None:
    repo, out = turn.repo, turn.out
    case = await repo.get_case(timer.subject)
    if case is None or case.state != "active" or case.agent is None:
        return
    profile = turn.config.profiles.by_id(case.profile_id)
    timeout = turn.config.reply_timeout_for(options_for(profile))
    since = await waiting_since(repo, case)
    if timeout is None or since is None:
        return  # answered meanwhile
    if since + timeout > out.now:  # a later wait: the timer moves to its end
        await repo.schedule(case.code, "reply", since + timeout)
        return
    conv = await repo.get_conversation(case.customer)
    assert conv is not None
    values = {
        "code": case.code,
        "name": conv.name or "-",
        "phone": handle(conv),
        "agent": agent_name(profile, case.agent),
        "minutes": int((out.now - since).total_seconds() // 60),
    }
    others = [a for a in await available_agents(turn, profile) if a != case.agent]
    await repo.take_offer(case.code)  # an offer of an earlier wait is stale
    if others and await repo.offer_reply(case.code, case.agent, out.now):
        offer = TextContent(body=say(profile, "handoff.agent.reply_offer", **values))
        for other in others:
            await to_agent(turn, other, offer, case, conv, label=f"offer:{other}")
        key = "handoff.agent.reply_offered"
    else:
        key = "handoff.agent.reply_reminder"
    told = TextContent(body=say(profile, key, **values))
    await to_agent(turn, case.agent, told, case, conv, label="reply-timeout")
    out.fact("reply_timeout", "offered" if others else "alone")


async def take_offered(turn: Turn, agent: Agent, case: Case, text: str) -> bool:
    """``agent`` takes over ``case`` (``/tomar``) when it is offered: the first one wins.
    False when it is not offered (the caller answers as for any case of another agent)."""
    repo, out = turn.repo, turn.out
    if case.state != "active" or case.agent in (None, agent.phone):
        return False
    offered_from = await repo.take_offer(case.code)
    if offered_from is None:
        return False
    profile = turn.config.profiles.by_id(case.profile_id)
    assert case.agent is not None
    if offered_from != case.agent or await waiting_since(repo, case) is None:
        name = agent_name(profile, case.agent)
        reply = say(profile, "handoff.agent.offer_answered", code=case.code, agent=name)
        tell(out, agent.phone, reply, "offer-answered")
        return True
    conv = await repo.get_conversation(case.customer)
    assert conv is not None
    await transfer_case(turn, case, conv, agent, agent.phone, "reply_timeout")
    tell(out, agent.phone, await claimed_reply(turn, profile, case, conv), "took-over")
    if text:
        await relay_to_customer(turn, case, TextContent(body=text), None, text)
    return True
