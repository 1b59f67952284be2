"""A customer's identity changes, and WhatsApp's system messages.

Meta announces a new phone number (``user_changed_number``: it brings a new BSUID), a new BSUID
(``user_changed_user_id``, ``user_id_update``) or a new security identity on the same phone
(``customer_identity_changed``); the gateway publishes each as ``IdentityChanged``. The
conversation carries on under the new identifiers (an open case too: no second customer, no
second case); the old ones still find it for messages sent before the change. The transcript
notes the change, and the agent of an active case is told.

Other system messages still arrive as ``InboundMessage`` (``message_type`` "system"): they are
WhatsApp's, not the customer's words, so they never reach the bot or an agent; the transcript
keeps them.
"""

from __future__ import annotations

import logging

from handoff.content import aware, sent_at
from handoff.delivery import to_agent
from handoff.identities import identifiers
from handoff.outcome import Turn
from handoff.repository import Conversation, Line, Repository
from handoff.texts import say
from shared.events import InboundMessage, TextContent
from shared.phone import maybe_e164
from shared.signals import IdentityChanged

log = logging.getLogger("mensajero.handoff")


async def on_identity_changed(turn: Turn, change: IdentityChanged) -> None:
    repo, at = turn.repo, aware(change.timestamp)
    before, after = identifiers(change.previous), identifiers(change.current)
    if not after:
        log.warning("identity change without the new identifiers ignored: %s", change.change)
        return
    conv = await _carrier(repo, before, after, change)
    if conv is None:
        log.info("identity change of a customer handoff never met: %s", change.change)
        return
    gone = _gone(change)
    known = await repo.identifiers_of(conv.customer)
    linked = all(i in known and known[i] is None for i in after)
    retired = all(known.get(i) is not None for i in gone)
    if linked and retired and change.change != "customer_identity_changed":
        return  # told before (a system message and user_id_update for the same change)
    # The old identifiers go with it (for messages in flight), retired from the change on.
    await repo.link_identifiers(conv.customer, [*after, *gone], take=True)
    await repo.retire_identifiers(conv.customer, gone, at)
    note = _note(turn, conv, change)
    _carry(conv, change, gone)
    if gone and (conv.identity_changed_at is None or at > conv.identity_changed_at):
        conv.identity_changed_at = at
    await repo.add_line(conv.customer, Line(at, "system", note, conv.case_code))
    case = await repo.get_case(conv.case_code) if conv.case_code else None
    if case is not None and case.state == "active" and case.agent is not None:
        profile = turn.config.profiles.by_id(conv.profile_id)
        text = say(profile, "handoff.agent.identity_changed", code=case.code, note=note)
        await to_agent(turn, case.agent, TextContent(body=text), case, conv, label="identity")
    await repo.save_conversation(conv)


async def _carrier(
    repo: Repository, before: list[str], after: list[str], change: IdentityChanged
) -> Conversation | None:
    """The conversation that carries on: the previous identifiers', unless a message under the
    new ones came first and opened a case there."""
    at = aware(change.timestamp)
    found = [
        conv
        for conv in (
            await repo.find_conversation(before, at),
            await repo.find_conversation(after, at),
        )
        if conv is not None
    ]
    if not found:
        return None
    carrier = next((c for c in found if c.state != "bot"), found[0])
    for other in found:
        if other.customer != carrier.customer and other.state != "bot":
            log.warning(
                "%s and %s are one person with two open cases; new messages go to %s",
                carrier.customer,
                other.customer,
                carrier.customer,
            )
    return carrier


def _gone(change: IdentityChanged) -> list[str]:
    """What the change takes from the customer: a new number, the old phone (and the BSUIDs it
    replaces); a new BSUID, the old BSUID only (the phone stays); a new security identity,
    nothing."""
    previous, current = change.previous, change.current
    if change.change == "customer_identity_changed":
        return []
    pairs = [
        (previous.user_id, current.user_id),
        (previous.parent_user_id, current.parent_user_id),
    ]
    old_phone = maybe_e164(previous.phone)
    gone = [old for old, new in pairs if old and new and old != new]
    if change.change == "user_changed_number" and old_phone:
        gone += [old_phone] if old_phone != maybe_e164(current.phone) else []
    return gone


def _carry(conv: Conversation, change: IdentityChanged, gone: list[str]) -> None:
    """The conversation's identifiers are the new ones; the retired ones are no longer theirs."""
    now = change.current

    def kept(value: str | None) -> str | None:
        return None if value in gone else value

    conv.phone = maybe_e164(now.phone) or kept(conv.phone)
    conv.user_id = now.user_id or kept(conv.user_id)
    conv.parent_user_id = now.parent_user_id or kept(conv.parent_user_id)
    conv.name = now.name or conv.name
    conv.username = now.username or conv.username


def _note(turn: Turn, conv: Conversation, change: IdentityChanged) -> str:
    """The transcript's line for the change (the conversation still as it was)."""
    profile = turn.config.profiles.by_id(conv.profile_id)
    previous, current = change.previous, change.current
    name = current.name or conv.name or previous.handle or "-"
    if change.change == "user_changed_number":
        before, after = previous.phone or previous.handle, current.phone or current.handle
    else:  # a new BSUID: the phone (if any) is the same
        before, after = previous.user_id or previous.handle, current.user_id or current.handle
    return say(
        profile,
        f"handoff.identity.{change.change}",
        name=name,
        before=before or "-",
        after=after or "-",
    )


async def on_system_message(turn: Turn, msg: InboundMessage) -> None:
    """WhatsApp's own notice about a customer: kept in their transcript, answered by nobody."""
    at = sent_at(msg)
    conv = await turn.repo.find_conversation(identifiers(msg.sender), at)
    if conv is None:
        return
    system = msg.system or {}
    said = system.get("body") or msg.text or system.get("type") or msg.message_type
    profile = turn.config.profiles.by_id(conv.profile_id)
    text = say(profile, "handoff.transcript.system", text=str(said))
    await turn.repo.add_line(conv.customer, Line(at, "system", text, conv.case_code))
