"""Handoff's repository in memory, for the unit tests of its use cases (tests/handoff).

The same behaviour as ``handoff.postgres.PgRepository``, which tests/handoff/test_repository_pg
checks against PostgreSQL; version conflicts raise ``ConcurrentUpdate`` as it does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from handoff.repository import (
    Agent,
    Case,
    ConcurrentUpdate,
    Conversation,
    Draft,
    Line,
    Rating,
    RatingState,
    SendRecord,
    TimerKind,
    Transfer,
)
from shared.events import SendMessage
from shared.timers import Timer


@dataclass
class FakeRepository:
    """The same behaviour in memory, for unit tests of the handlers."""

    conversations: dict[str, Conversation] = field(default_factory=dict)
    # identifier -> (conversation key, retired at)
    identifiers: dict[str, tuple[str, datetime | None]] = field(default_factory=dict)
    cases: dict[str, Case] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    lines: list[tuple[str, Line]] = field(default_factory=list)
    outgoing: dict[str, SendRecord] = field(default_factory=dict)
    timers: dict[tuple[str, str], Timer] = field(default_factory=dict)
    held: list[tuple[str, str, SendMessage]] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    sequence: int = 1023
    transfer_log: list[Transfer] = field(default_factory=list)
    offers: dict[str, str] = field(default_factory=dict)  # case code -> offered from agent
    ratings: dict[str, Rating] = field(default_factory=dict)

    async def get_conversation(self, customer: str) -> Conversation | None:
        found = self.conversations.get(customer)
        return dataclasses.replace(found) if found else None

    async def find_conversation(
        self, identifiers: Sequence[str], at: datetime
    ) -> Conversation | None:
        for identifier in identifiers:
            customer, retired_at = self.identifiers.get(identifier, ("", None))
            if customer and (retired_at is None or retired_at >= at):
                return await self.get_conversation(customer)
        return None

    async def identifiers_of(self, customer: str) -> dict[str, datetime | None]:
        return {i: retired for i, (c, retired) in self.identifiers.items() if c == customer}

    async def link_identifiers(
        self, customer: str, identifiers: Sequence[str], *, take: bool = False
    ) -> None:
        for identifier in identifiers:
            found = self.identifiers.get(identifier)
            if found is None or found[1] is not None or (take and found[0] != customer):
                self.identifiers[identifier] = (customer, None)

    async def retire_identifiers(
        self, customer: str, identifiers: Sequence[str], at: datetime
    ) -> None:
        for identifier in identifiers:
            owner, retired_at = self.identifiers.get(identifier, ("", None))
            if owner == customer and retired_at is None:
                self.identifiers[identifier] = (customer, at)

    async def add_conversation(self, conversation: Conversation) -> Conversation:
        if conversation.customer in self.conversations:
            raise ConcurrentUpdate(conversation.customer)
        self.conversations[conversation.customer] = dataclasses.replace(conversation)
        return dataclasses.replace(conversation)

    async def save_conversation(self, conversation: Conversation) -> None:
        stored = self.conversations.get(conversation.customer)
        if stored is None or stored.version != conversation.version:
            raise ConcurrentUpdate(conversation.customer)
        conversation.version += 1
        self.conversations[conversation.customer] = dataclasses.replace(conversation)

    async def next_case_number(self) -> int:
        self.sequence += 1
        return self.sequence

    async def add_case(self, case: Case) -> None:
        if any(c.customer == case.customer and c.state != "closed" for c in self.cases.values()):
            raise ConcurrentUpdate(case.customer)
        self.cases[case.code] = dataclasses.replace(case)

    async def get_case(self, code: str) -> Case | None:
        found = self.cases.get(code)
        return dataclasses.replace(found) if found else None

    async def claim_case(self, code: str, agent: str, at: datetime) -> Case | None:
        case = self.cases.get(code)
        if case is None or case.state != "queued":
            return None
        case.state, case.agent, case.claimed_at, case.last_activity_at = "active", agent, at, at
        case.version += 1
        return dataclasses.replace(case)

    async def save_case(self, case: Case) -> None:
        stored = self.cases.get(case.code)
        if stored is None or stored.version != case.version:
            raise ConcurrentUpdate(case.code)
        case.version += 1
        self.cases[case.code] = dataclasses.replace(case)

    async def open_cases(self) -> list[Case]:
        found = [c for c in self.cases.values() if c.state != "closed"]
        return [dataclasses.replace(c) for c in sorted(found, key=lambda c: c.created_at)]

    async def get_agent(self, phone: str) -> Agent:
        found = self.agents.get(phone)
        return dataclasses.replace(found) if found else Agent(phone)

    async def save_agent(self, agent: Agent) -> None:
        self.agents[agent.phone] = dataclasses.replace(agent)

    async def add_line(self, customer: str, line: Line) -> None:
        self.lines.append((customer, line))

    async def adopt_last_line(self, customer: str, code: str) -> None:
        for index in range(len(self.lines) - 1, -1, -1):
            who, line = self.lines[index]
            if who == customer:
                if line.case_code is None:
                    self.lines[index] = (who, dataclasses.replace(line, case_code=code))
                return

    async def last_lines(self, customer: str, limit: int) -> list[Line]:
        return [line for who, line in self.lines if who == customer][-limit:]

    async def case_lines(self, code: str) -> list[Line]:
        return [line for _who, line in self.lines if line.case_code == code]

    async def add_outgoing(self, record: SendRecord) -> None:
        self.outgoing.setdefault(record.command_id, record)

    async def set_wamid(self, command_id: str, wamid: str, *, replace: bool = True) -> bool:
        found = self.outgoing.get(command_id)
        if found is None or (not replace and found.wamid is not None):
            return False
        self.outgoing[command_id] = dataclasses.replace(found, wamid=wamid)
        return True

    async def outgoing_by_wamid(self, wamid: str) -> SendRecord | None:
        return next((o for o in self.outgoing.values() if o.wamid == wamid), None)

    async def outgoing_by_command(self, command_id: str) -> SendRecord | None:
        return self.outgoing.get(command_id)

    async def awaiting_wamid(self, recipient: str) -> bool:
        held = {m.event_id for _r, _c, m in self.held}
        return any(
            o.recipient == recipient and o.wamid is None and o.command_id not in held
            for o in self.outgoing.values()
        )

    async def schedule(self, code: str, kind: TimerKind, due_at: datetime) -> None:
        self.timers[(code, kind)] = Timer(len(self.timers) + 1, code, kind, due_at)

    async def cancel_timers(self, code: str) -> None:
        for key in [k for k in self.timers if k[0] == code]:
            del self.timers[key]

    async def hold(self, recipient: str, code: str, command: SendMessage) -> bool:
        first = not any(r == recipient for r, _c, _m in self.held)
        self.held.append((recipient, code, command))
        return first

    async def take_held(self, recipient: str) -> list[SendMessage]:
        mine = [m for r, _c, m in self.held if r == recipient]
        self.held = [h for h in self.held if h[0] != recipient]
        return mine

    async def counts(self) -> dict[str, int]:
        states = [c.state for c in self.cases.values()]
        return {"queued": states.count("queued"), "active": states.count("active")}

    async def keep_draft(self, draft: Draft) -> None:
        if all(d.message.wamid != draft.message.wamid for d in self.drafts):
            self.drafts.append(draft)

    async def drafts_of(self, agent: str) -> list[Draft]:
        return [d for d in self.drafts if d.agent == agent]

    async def take_drafts(self, agent: str) -> list[Draft]:
        mine = [d for d in self.drafts if d.agent == agent]
        self.drafts = [d for d in self.drafts if d.agent != agent]
        return mine

    async def add_transfer(self, transfer: Transfer) -> None:
        self.transfer_log.append(transfer)

    async def transfers(self, code: str) -> list[Transfer]:
        return [t for t in self.transfer_log if t.case_code == code]

    async def offer_reply(self, code: str, from_agent: str, at: datetime) -> bool:
        if code in self.offers:
            return False
        self.offers[code] = from_agent
        return True

    async def take_offer(self, code: str) -> str | None:
        return self.offers.pop(code, None)

    async def offer_rating(self, code: str) -> None:
        self.ratings[code] = Rating("offered")

    async def settle_rating(self, code: str, state: RatingState, score: int | None) -> bool:
        found = self.ratings.get(code)
        if found is None or found.state != "offered":
            return False
        self.ratings[code] = Rating(state, score)
        return True

    async def rating_of(self, code: str) -> Rating | None:
        return self.ratings.get(code)
