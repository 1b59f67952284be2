"""Relays of a case, both ways: what the customer sends reaches the agent under the case's
header; what the agent sends reaches the customer as the business. Each keeps the case active
(its idle timer moves) and counts a relay."""

from __future__ import annotations

from handoff.content import (
    MEDIA_KINDS,
    copy_of,
    describe_content,
    location_of,
)
from handoff.delivery import (
    customer_template,
    new_command,
    send,
    send_or_hold,
    send_record,
    tell,
    to_agent,
)
from handoff.identities import address, display_name
from handoff.options import options_for
from handoff.outcome import Turn
from handoff.repository import Case, Conversation, Line
from handoff.texts import say
from shared.events import InboundMessage, OutboundContent, ReactionContent, TextContent
from shared.meta_limits import CAPTION_MAX, CAPTIONED, TEXT_BODY_MAX


async def relay_to_agent(turn: Turn, case: Case, conv: Conversation, msg: InboundMessage) -> None:
    """A customer's message to the agent of their active case."""
    assert case.agent is not None
    contents, kind = await _for_agent(turn, case, conv, msg)
    for index, content in enumerate(contents):
        await to_agent(
            turn,
            case.agent,
            content,
            case,
            conv,
            label=f"relay:{index}",
            source_wamid=msg.wamid,
        )
    await keep_active(turn, case)
    turn.out.fact("relay", "to_agent", 0.0)
    turn.out.fact("relay_kind", kind)


async def _for_agent(
    turn: Turn, case: Case, conv: Conversation, msg: InboundMessage
) -> tuple[list[OutboundContent], str]:
    """What the agent gets for ``msg`` (a header, then the content), and the relay's kind."""
    profile = turn.config.profiles.by_id(case.profile_id)
    values = {"code": case.code, "name": display_name(conv)}
    kind = msg.message_type
    if msg.reaction is not None:
        # On the agent's own message it was relayed as, when it is one; else told in words.
        emoji = msg.reaction.emoji or ""
        target = await turn.repo.outgoing_by_wamid(msg.reaction.message_id)
        if target is not None and target.role == "customer" and target.source_wamid:
            return [ReactionContent(message_id=target.source_wamid, emoji=emoji)], "reaction"
        text = say(profile, "handoff.agent.relay_reaction", emoji=emoji, **values)
        return [TextContent(body=text)], "reaction"
    location = location_of(msg)
    if location is not None:
        text = say(profile, "handoff.agent.relay_location", **values)
        return [TextContent(body=text), location], "location"
    if msg.media is not None and msg.media.id and kind in MEDIA_KINDS:
        header = say(profile, "handoff.agent.relay_header", **values)
        if kind in CAPTIONED:
            caption = f"{header}\n{msg.text}" if msg.text else header
            return [copy_of(msg.media, kind, caption[:CAPTION_MAX])], "media"
        text = say(profile, "handoff.agent.relay_media", **values)
        return [TextContent(body=text), copy_of(msg.media, kind, None)], "media"
    if msg.text:
        header = say(profile, "handoff.agent.relay_header", **values)
        return [TextContent(body=f"{header}\n{msg.text}"[:TEXT_BODY_MAX])], "text"
    text = say(profile, "handoff.agent.relay_unsupported", kind=msg.message_type, **values)
    return [TextContent(body=text)], "unsupported"


async def relay_to_customer(
    turn: Turn, case: Case, content: OutboundContent, msg: InboundMessage | None, text: str
) -> None:
    """An agent's message (``content``; ``msg`` None for a claim's first words) to the
    customer. Outside the customer's window it waits for them, and the agent is told."""
    repo, out = turn.repo, turn.out
    conv = await repo.get_conversation(case.customer)
    assert conv is not None
    profile = turn.config.profiles.by_id(case.profile_id)
    options = options_for(profile)
    fallback = customer_template(options, conv)
    command = new_command(out, address(conv), content, "relay", fallback=fallback)
    source = msg.wamid if msg is not None else None
    await repo.add_outgoing(send_record(command, case.code, "customer", source))

    async def reengage() -> None:
        send(out, address(conv), customer_template(options, conv), "reengage")

    sent = await send_or_hold(
        turn,
        command,
        case,
        last_inbound_at=conv.last_inbound_at,
        hold_for=conv.customer,
        reengage=reengage,
    )
    if not sent:
        assert case.agent is not None
        reply = say(profile, "handoff.agent.customer_window_closed", name=display_name(conv))
        tell(out, case.agent, reply, "customer-window")
    line = Line(out.now, "agent", text or describe_content(content), case.code)
    await repo.add_line(conv.customer, line)
    if case.first_response_at is None:
        case.first_response_at = out.now
        out.fact("first_response", "", (out.now - case.created_at).total_seconds())
    await keep_active(turn, case)
    out.fact("relay", "to_customer")
    out.fact("relay_kind", content.kind)


async def keep_active(turn: Turn, case: Case) -> None:
    """The case had activity now: its idle timer starts again."""
    now = turn.out.now
    case.last_activity_at = now
    await turn.repo.save_case(case)
    profile = turn.config.profiles.by_id(case.profile_id)
    idle = turn.config.idle_timeout_for(options_for(profile))
    await turn.repo.schedule(case.code, "idle", now + idle)
