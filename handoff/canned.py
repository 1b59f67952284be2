"""Canned replies: ``/r <name>`` sends the profile's reply of that name to the customer of the
agent's active case, ``{name}`` filled in with the customer's name; ``/r`` alone lists them.

Configured per profile (``settings.handoff.canned_replies``: name -> text); names are matched
without case or accents.
"""

from __future__ import annotations

from handoff.delivery import tell
from handoff.identities import display_name
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.relays import relay_to_customer
from handoff.repository import Agent, Case, Repository
from handoff.router import Command, normalize, one_line
from handoff.texts import say
from shared.events import TextContent
from shared.meta_limits import TEXT_BODY_MAX
from shared.profiles import CompanyProfile


async def on_canned(turn: Turn, profile: CompanyProfile, agent: Agent, command: Command) -> None:
    out, phone = turn.out, agent.phone
    case = await active_case_of(turn.repo, agent)
    if case is not None:
        profile = turn.config.profiles.by_id(case.profile_id)
    replies = options_for(profile).canned_replies
    wanted = normalize(command.raw)
    if not wanted:
        tell(out, phone, listing(profile, replies), "canned-list")
        return
    chosen = next((text for name, text in replies.items() if normalize(name) == wanted), None)
    if chosen is None:
        reply = say(
            profile,
            "handoff.agent.canned_unknown",
            reply=command.raw,
            replies=listing(profile, replies),
        )
        tell(out, phone, reply, "canned-unknown")
        return
    if case is None:
        tell(out, phone, say(profile, "handoff.agent.no_active_case"), "canned-no-case")
        return
    conv = await turn.repo.get_conversation(case.customer)
    assert conv is not None
    text = fill_in(chosen, name=(conv.name or display_name(conv)), company=profile.name)
    agent.current_case = case.code
    await relay_to_customer(turn, case, TextContent(body=text[:TEXT_BODY_MAX]), None, text)


def listing(profile: CompanyProfile, replies: dict[str, str]) -> str:
    if not replies:
        return say(profile, "handoff.agent.canned_none")
    lines = [
        say(profile, "handoff.agent.canned_line", reply=name, preview=one_line(text, 60))
        for name, text in replies.items()
    ]
    return say(profile, "handoff.agent.canned_list", replies="\n".join(lines))


def fill_in(text: str, **values: str) -> str:
    """The reply with ``{name}`` (and ``{company}``) filled in; other braces stay as they are."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


async def active_case_of(repo: Repository, agent: Agent) -> Case | None:
    """The agent's current case, else their only active one."""
    if agent.current_case:
        current = await repo.get_case(agent.current_case)
        if current is not None and current.state == "active" and current.agent == agent.phone:
            return current
    mine = [c for c in await repo.open_cases() if c.state == "active" and c.agent == agent.phone]
    return mine[0] if len(mine) == 1 else None
