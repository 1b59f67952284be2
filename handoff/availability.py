"""Who takes new cases, and how agents are named.

A profile's agents (``CompanyProfile.agents``, else ``AGENT_WHATSAPP_NUMBER``) are available
unless paused: ``/pausa`` stops new cases reaching an agent, ``/vuelvo`` starts them again (their
active cases stay with them). An agent is named by the profile's ``agent_names`` (by phone), by
their phone, or by their number in the profile's list (``/pasar K7F 2``).
"""

from __future__ import annotations

from handoff.config import HandoffConfig
from handoff.delivery import tell
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.repository import Agent
from handoff.router import Command, normalize
from handoff.texts import say
from shared.phone import maybe_e164
from shared.profiles import CompanyProfile


async def available_agents(turn: Turn, profile: CompanyProfile) -> list[str]:
    """The profile's agents who are not paused, in the configured order."""
    agents = turn.config.agents_for(profile)
    return [phone for phone in agents if not (await turn.repo.get_agent(phone)).paused]


def agent_name(profile: CompanyProfile, phone: str) -> str:
    return options_for(profile).agent_names.get(phone) or phone


def find_agent(config: HandoffConfig, profile: CompanyProfile, wanted: str) -> str | None:
    """The agent ``wanted`` names: their number in the list (1, 2...), phone, or name (whole,
    or the first word)."""
    agents = config.agents_for(profile)
    text = wanted.strip()
    if text.isdigit() and 1 <= int(text) <= len(agents):
        return agents[int(text) - 1]
    phone = maybe_e164(text)
    if phone in agents:
        return phone
    key = normalize(text)
    names = options_for(profile).agent_names
    for agent in agents:
        name = normalize(names.get(agent, ""))
        if key and name and (name == key or name.split()[0] == key):
            return agent
    return None


def roster(config: HandoffConfig, profile: CompanyProfile) -> str:
    """The profile's agents as /pasar takes them: "1. Ana (+54...)"."""
    lines = []
    for index, phone in enumerate(config.agents_for(profile), 1):
        name = agent_name(profile, phone)
        shown = phone if name == phone else f"{name} ({phone})"
        lines.append(say(profile, "handoff.agent.agent_line", index=index, name=shown))
    return "\n".join(lines)


async def pause(turn: Turn, profile: CompanyProfile, agent: Agent, command: Command) -> None:
    """``/pausa``: no new cases (the caller saves ``agent``)."""
    agent.paused = True
    tell(turn.out, agent.phone, say(profile, "handoff.agent.paused"), "paused")


async def resume(turn: Turn, profile: CompanyProfile, agent: Agent, command: Command) -> None:
    """``/vuelvo``: new cases again."""
    agent.paused = False
    tell(turn.out, agent.phone, say(profile, "handoff.agent.resumed"), "resumed")
