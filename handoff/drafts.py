"""An agent's words are never thrown away: a message for no case in particular, written while
several cases could take it, is kept (a draft, in the database) while the agent chooses its case
from an interactive list. The row they tap delivers it (``agents``); after
``HANDOFF_DRAFT_TTL_SECONDS`` without a choice it expires, once (a durable timer, subject the
agent's phone), and the agent is told what was not sent."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from handoff.content import describe
from handoff.delivery import send, tell
from handoff.identities import handle
from handoff.outcome import Turn
from handoff.repository import Agent, Case, Draft
from handoff.router import CHOICE_PAYLOAD_PREFIX, one_line
from handoff.texts import say
from shared.events import InboundMessage, ListContent, ListRow, ListSection
from shared.meta_limits import (
    LIST_BUTTON_MAX,
    ROW_DESCRIPTION_MAX,
    ROW_TITLE_MAX,
    ROWS_MAX,
    SECTION_TITLE_MAX,
)
from shared.profiles import CompanyProfile

DRAFT_TIMER: Final = "draft"
# How much of each expired message the note quotes.
QUOTED_MAX = 80


async def choices(turn: Turn, agent: Agent) -> list[Case]:
    """The cases an agent's message for no case could be for: their own active ones, then the
    waiting ones of the profiles they serve (none while they are paused: /pausa means no new
    cases; /tomar still takes one); oldest first."""
    config = turn.config
    cases = await turn.repo.open_cases()
    mine = [c for c in cases if c.state == "active" and c.agent == agent.phone]
    if agent.paused:
        return mine
    waiting = [
        c
        for c in cases
        if c.state == "queued" and config.serves(agent.phone, config.profiles.by_id(c.profile_id))
    ]
    return mine + waiting


async def keep(
    turn: Turn,
    profile: CompanyProfile,
    agent: Agent,
    msg: InboundMessage,
    text: str,
    cases: list[Case],
) -> None:
    """Keep ``msg`` (after the agent's other drafts) and ask which of ``cases`` it is for."""
    repo = turn.repo
    await repo.keep_draft(Draft(agent.phone, msg, text, turn.out.now))
    kept = await repo.drafts_of(agent.phone)
    await offer(turn, profile, agent, cases, count=len(kept))


async def offer(
    turn: Turn, profile: CompanyProfile, agent: Agent, cases: list[Case], *, count: int
) -> None:
    """Ask the agent, as a list they tap, which of ``cases`` their ``count`` kept drafts are
    for; they are kept ``draft_ttl`` from now."""
    out = turn.out
    due = out.now + timedelta(seconds=turn.config.draft_ttl)
    await turn.repo.schedule(agent.phone, DRAFT_TIMER, due)
    rows = [await _row(turn, profile, agent, case) for case in cases[:ROWS_MAX]]
    key = "handoff.agent.choose_case" if count <= 1 else "handoff.agent.choose_case_more"
    content = ListContent(
        body=say(profile, key, until=_clock_time(profile, due), count=count),
        button=one_line(say(profile, "handoff.agent.choose_button"), LIST_BUTTON_MAX),
        sections=[
            ListSection(
                title=one_line(say(profile, "handoff.agent.choose_section"), SECTION_TITLE_MAX),
                rows=rows,
            )
        ],
    )
    send(out, agent.phone, content, "choose")


async def _row(turn: Turn, profile: CompanyProfile, agent: Agent, case: Case) -> ListRow:
    """A case as a row: its code and the customer's name; their phone (else @username, else
    BSUID) and whether it waits or is the agent's."""
    conv = await turn.repo.get_conversation(case.customer)
    name = (conv.name if conv else None) or "-"
    title = say(profile, "handoff.agent.choose_row", code=case.code, name=name)
    mine = case.state == "active" and case.agent == agent.phone
    key = "handoff.agent.choose_row_yours" if mine else "handoff.agent.choose_row_queued"
    description = say(profile, key, phone=handle(conv) if conv else "-")
    return ListRow(
        id=CHOICE_PAYLOAD_PREFIX + case.code,
        title=one_line(title, ROW_TITLE_MAX),
        description=one_line(description, ROW_DESCRIPTION_MAX),
    )


def _clock_time(profile: CompanyProfile, moment: datetime) -> str:
    """``moment`` as the agent reads a time of day: HH:MM in the profile's time zone."""
    return moment.astimezone(ZoneInfo(profile.timezone)).strftime("%H:%M")


async def on_expired(turn: Turn, phone: str) -> None:
    """The agent's draft timer: what they kept and never sent a case is dropped, and they are
    told which messages did not go (nothing, when a choice delivered them first)."""
    expired = await turn.repo.take_drafts(phone)
    if not expired:
        return
    profile = turn.config.profiles.for_number(expired[0].message.phone_number_id)
    said = ", ".join(f"«{one_line(d.text or describe(d.message), QUOTED_MAX)}»" for d in expired)
    note = say(profile, "handoff.agent.draft_expired", messages=said)
    tell(turn.out, phone, note, "draft-expired")
