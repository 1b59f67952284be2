"""Who a customer is: the identifiers that find their one conversation, and how people read them.

Meta names a WhatsApp user by up to three identifiers (``shared.events.Identity``): the phone
(E.164; absent for a user who hides it behind a username), the business-scoped user id (BSUID,
on every webhook since April 2026) and the parent BSUID (across linked portfolios). A
conversation's key is set once, from the first identifiers handoff saw, and never changes; every
identifier the customer comes with names it (``Repository.link_identifiers``), so a customer
first known by phone and later by BSUID alone (or the other way round) is one conversation.
An identity change (``customers.on_identity_changed``) links the new identifiers and retires the
old ones, which still find the conversation for what was sent before the change.

Sends go to the phone when it is known (every kind of message reaches a phone, and Meta
recommends it: its webhooks then keep the phone), else to the BSUID (the sender puts it in
Meta's ``recipient``), else to the parent BSUID.
"""

from __future__ import annotations

from datetime import datetime

from handoff.outcome import Turn
from handoff.repository import Conversation
from shared.events import Identity
from shared.phone import digits, maybe_e164
from shared.profiles import CompanyProfile


def identifiers(who: Identity) -> list[str]:
    """The identifiers that find ``who``, the most lasting first: the BSUID (a username or a
    hidden phone leaves it as it is), the phone, the parent BSUID."""
    found = (who.user_id, maybe_e164(who.phone), who.parent_user_id)
    return list(dict.fromkeys(value for value in found if value))


def ordering_key(who: Identity) -> str:
    """One person's events run in order on the bus under this key (``Identity.ordering_key``,
    which the publishers put in the header handoff's partitions hash on)."""
    return who.ordering_key


def identity(conv: Conversation) -> Identity:
    """The customer as handoff's events carry them: every identifier known, name and username."""
    return Identity(
        phone=conv.phone,
        wa_id=digits(conv.phone) if conv.phone else None,
        user_id=conv.user_id,
        parent_user_id=conv.parent_user_id,
        name=conv.name,
        username=conv.username,
    )


def address(conv: Conversation) -> str:
    """Where a send to the customer goes (``SendMessage.to``): see the module's docstring."""
    return conv.phone or conv.user_id or conv.parent_user_id or conv.customer


def handle(conv: Conversation) -> str:
    """The phone, or where Meta hides it the username (``@ana``), else the BSUID."""
    return identity(conv).handle or "-"


def display_name(conv: Conversation) -> str:
    """The customer as an agent reads them in one line (relay headers): their name, with the
    username or BSUID when there is no phone; without a name, how to recognise them."""
    who = handle(conv)
    if conv.name and not conv.phone and who != "-":
        return f"{conv.name} ({who})"
    return conv.name or who


def learn(conv: Conversation, who: Identity) -> None:
    """What ``who`` (a message of theirs) tells of the customer; what it leaves out is kept (a
    phone Meta hides now is still theirs)."""
    conv.phone = maybe_e164(who.phone) or conv.phone
    conv.user_id = who.user_id or conv.user_id
    conv.parent_user_id = who.parent_user_id or conv.parent_user_id
    conv.name = who.name or conv.name
    conv.username = who.username or conv.username


async def conversation_of(
    turn: Turn, profile: CompanyProfile, who: Identity, phone_number_id: str, at: datetime
) -> Conversation | None:
    """The conversation of ``who`` (new the first time), for something sent at ``at``, knowing
    them from now on by every identifier it came with. None when it names nobody."""
    found = identifiers(who)
    if not found:
        return None
    repo = turn.repo
    conv = await repo.find_conversation(found, at)
    if conv is None:
        key = found[0]
        if await repo.get_conversation(key) is not None:
            # An identifier someone else had before (a phone number given to a new person).
            key = f"{key}~{turn.out.source_id[:8]}"
        conv = await repo.add_conversation(
            Conversation(key, None, None, None, phone_number_id, profile.id)
        )
    # What was sent before the customer's last identity change names who they were.
    if conv.identity_changed_at is None or at >= conv.identity_changed_at:
        learn(conv, who)
        await repo.link_identifiers(conv.customer, found)
    return conv
