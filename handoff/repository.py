"""Handoff's state behind a port (:class:`Repository`).

Every method runs inside the caller's transaction (``Outbox.handle_once`` opens it), so a use
case's state changes and the events it publishes commit together or not at all. The PostgreSQL
adapter is ``handoff.postgres.PgRepository``; the in-memory fake for unit tests is
``tests/fakes/handoff.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from shared.events import InboundMessage, SendMessage

ConversationState = Literal["bot", "queued", "active"]
CaseState = Literal["queued", "active", "closed"]
Author = Literal["customer", "agent", "bot", "system"]
# A case's timers (shared.timers, subject: the case code): nobody claimed it, nothing happened,
# its customer waits for the agent's answer (handoff.reply_timeout), its rating's deadline;
# and an agent's drafts' ("draft", subject: the agent's phone).
TimerKind = Literal["queue", "idle", "reply", "rating", "draft"]
RatingState = Literal["offered", "rated", "expired"]


class ConcurrentUpdate(Exception):
    """Someone else changed the row first (version moved on): rerun the whole handler."""


@dataclass
class Conversation:
    """One customer's conversation. ``customer`` is its key, set once (from the first
    identifier handoff saw) and never changed; every identifier the customer is known by finds
    it (``find_conversation``)."""

    customer: str
    phone: str | None
    user_id: str | None
    name: str | None
    phone_number_id: str
    profile_id: str
    state: ConversationState = "bot"
    case_code: str | None = None
    last_inbound_at: datetime | None = None
    version: int = 1
    parent_user_id: str | None = None
    username: str | None = None
    # Someone at the business answered from the WhatsApp Business app: the bot is quiet until.
    bot_quiet_until: datetime | None = None
    # The last identity change (IdentityChanged): what was sent before it teaches nothing.
    identity_changed_at: datetime | None = None


@dataclass
class Case:
    code: str
    customer: str
    phone_number_id: str
    profile_id: str
    state: CaseState
    trigger: str
    created_at: datetime
    last_activity_at: datetime
    agent: str | None = None
    end_reason: str | None = None
    claimed_at: datetime | None = None
    first_response_at: datetime | None = None
    closed_at: datetime | None = None
    version: int = 1


@dataclass
class Agent:
    phone: str
    last_inbound_at: datetime | None = None
    current_case: str | None = None
    paused: bool = False  # /pausa: offered no new cases until /vuelvo


@dataclass(frozen=True)
class Line:
    at: datetime
    author: Author
    text: str
    case_code: str | None = None


@dataclass(frozen=True)
class SendRecord:
    """A send command handoff asked for a case (a row of ``outgoing``): a later message that
    quotes or reacts to it finds its case, and the message it relays."""

    command_id: str
    case_code: str
    recipient: str
    role: Literal["agent", "customer"]
    source_wamid: str | None
    wamid: str | None = None
    body: str | None = None  # the SendMessage as JSON


@dataclass(frozen=True)
class Draft:
    """An agent's message for no case in particular, kept until they choose its case."""

    agent: str
    message: InboundMessage
    text: str
    at: datetime


@dataclass(frozen=True)
class Transfer:
    """A case moved from one agent to another (``reason``: transfer, reply_timeout)."""

    case_code: str
    from_agent: str
    to_agent: str
    at: datetime
    reason: str


@dataclass(frozen=True)
class Rating:
    state: RatingState
    score: int | None = None


class Repository(Protocol):
    async def get_conversation(self, customer: str) -> Conversation | None: ...
    async def find_conversation(
        self, identifiers: Sequence[str], at: datetime
    ) -> Conversation | None:
        """The conversation one of ``identifiers`` names (the first that does, in order), for
        something sent at ``at``: a retired identifier still names it for what was sent
        before it was retired (messages in flight), not after."""
        ...

    async def identifiers_of(self, customer: str) -> dict[str, datetime | None]:
        """Every identifier of a conversation, with when it was retired (None: current)."""
        ...

    async def link_identifiers(
        self, customer: str, identifiers: Sequence[str], *, take: bool = False
    ) -> None:
        """``identifiers`` name ``customer`` from now on. One that names another conversation
        is left to it, unless it was retired there or ``take`` (an identity change moves it)."""
        ...

    async def retire_identifiers(
        self, customer: str, identifiers: Sequence[str], at: datetime
    ) -> None: ...
    async def add_conversation(self, conversation: Conversation) -> Conversation: ...
    async def save_conversation(self, conversation: Conversation) -> None: ...
    async def next_case_number(self) -> int: ...
    async def add_case(self, case: Case) -> None: ...
    async def get_case(self, code: str) -> Case | None: ...
    async def claim_case(self, code: str, agent: str, at: datetime) -> Case | None: ...
    async def save_case(self, case: Case) -> None: ...
    async def open_cases(self) -> list[Case]: ...
    async def get_agent(self, phone: str) -> Agent: ...
    async def save_agent(self, agent: Agent) -> None: ...
    async def add_line(self, customer: str, line: Line) -> None: ...
    async def last_lines(self, customer: str, limit: int) -> list[Line]: ...
    async def adopt_last_line(self, customer: str, code: str) -> None: ...
    async def case_lines(self, code: str) -> list[Line]: ...
    async def add_outgoing(self, record: SendRecord) -> None: ...
    async def set_wamid(self, command_id: str, wamid: str, *, replace: bool = True) -> bool:
        """Record the wamid of a send of ours; with ``replace`` False, only when it has none."""
        ...

    async def outgoing_by_wamid(self, wamid: str) -> SendRecord | None: ...
    async def outgoing_by_command(self, command_id: str) -> SendRecord | None: ...
    async def awaiting_wamid(self, recipient: str) -> bool: ...
    async def schedule(self, code: str, kind: TimerKind, due_at: datetime) -> None: ...
    async def cancel_timers(self, code: str) -> None: ...
    async def hold(self, recipient: str, code: str, command: SendMessage) -> bool: ...
    async def take_held(self, recipient: str) -> list[SendMessage]: ...
    async def counts(self) -> dict[str, int]: ...
    async def keep_draft(self, draft: Draft) -> None: ...
    async def drafts_of(self, agent: str) -> list[Draft]:
        """The agent's kept drafts, oldest first, locked for this transaction (an expiry or a
        choice running at once waits for it)."""
        ...

    async def take_drafts(self, agent: str) -> list[Draft]:
        """The agent's kept drafts, oldest first, no longer kept."""
        ...

    # ------------------------------------------------------------ agents' features (issue 15)
    async def add_transfer(self, transfer: Transfer) -> None: ...
    async def transfers(self, code: str) -> list[Transfer]: ...
    async def offer_reply(self, code: str, from_agent: str, at: datetime) -> bool:
        """The case is offered to the other agents; False when it already is."""
        ...

    async def take_offer(self, code: str) -> str | None:
        """Take the case's offer (the first caller wins): the agent it was offered from."""
        ...

    async def offer_rating(self, code: str) -> None: ...
    async def settle_rating(self, code: str, state: RatingState, score: int | None) -> bool:
        """An offered rating becomes ``state`` (rated or expired): True only for the first."""
        ...

    async def rating_of(self, code: str) -> Rating | None: ...
