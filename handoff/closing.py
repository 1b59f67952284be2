"""What a closed case tells the notifier (``handoff.closed``: the transcript mail): its lines,
who handled it (the claim, then each transfer), and the customer's rating when they gave one."""

from __future__ import annotations

from typing import Literal, cast

from handoff.availability import agent_name
from handoff.identities import identity
from handoff.outcome import Turn
from handoff.repository import Case, Conversation, Line, Repository
from shared.events import CaseHandler, HandoffClosed, TranscriptLine
from shared.profiles import CompanyProfile

EndReason = Literal["agent", "customer", "timeout", "no_agent", "after_hours", "idle"]


def transcript(lines: list[Line]) -> list[TranscriptLine]:
    return [TranscriptLine(at=line.at, author=line.author, text=line.text) for line in lines]


async def handlers_of(repo: Repository, profile: CompanyProfile, case: Case) -> list[CaseHandler]:
    """Who handled ``case``, in order: the first claimed it, each transfer hands it on."""
    moves = await repo.transfers(case.code)
    first = moves[0].from_agent if moves else case.agent
    if first is None:
        return []
    spans = [(first, case.claimed_at)] + [(m.to_agent, m.at) for m in moves]
    ends = [m.at for m in moves] + [case.closed_at]
    return [
        CaseHandler(
            agent_phone=phone, agent_name=agent_name(profile, phone), since=since, until=end
        )
        for (phone, since), end in zip(spans, ends, strict=True)
    ]


async def publish_closed(
    turn: Turn,
    profile: CompanyProfile,
    case: Case,
    conv: Conversation,
    *,
    rating: int | None = None,
    rating_label: str | None = None,
) -> None:
    out = turn.out
    out.publish(
        HandoffClosed(
            event_id=out.next_id("closed"),
            case_code=case.code,
            customer=identity(conv),
            agent_phone=case.agent,
            end_reason=cast(EndReason, case.end_reason),
            profile_id=profile.id,
            transcript=transcript(await turn.repo.case_lines(case.code)),
            handlers=await handlers_of(turn.repo, profile, case),
            rating=rating,
            rating_label=rating_label,
            correlation_id=out.source_id,
        )
    )
