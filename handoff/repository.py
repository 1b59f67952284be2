"""Handoff's state behind a port: the PostgreSQL adapter and an in-memory fake beside it.

Every method runs inside the caller's transaction (``shared.outbox.handle_once`` opens it), so a
handler's state changes and the events it publishes commit together or not at all.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

import asyncpg

from shared.db import Connection
from shared.events import SendMessage

ConversationState = Literal["bot", "queued", "active"]
CaseState = Literal["queued", "active", "closed"]
Author = Literal["customer", "agent", "bot", "system"]
TimerKind = Literal["queue", "idle"]


class ConcurrentUpdate(Exception):
    """Someone else changed the row first (version moved on): rerun the whole handler."""


@dataclass
class Conversation:
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


@dataclass(frozen=True)
class Line:
    at: datetime
    author: Author
    text: str
    case_code: str | None = None


@dataclass(frozen=True)
class Outgoing:
    command_id: str
    case_code: str
    recipient: str
    role: Literal["agent", "customer"]
    source_wamid: str | None
    wamid: str | None = None
    body: str | None = None  # the SendMessage as JSON


@dataclass(frozen=True)
class Timer:
    id: int
    case_code: str
    kind: TimerKind
    due_at: datetime


class Repository(Protocol):
    async def get_conversation(self, customer: str) -> Conversation | None: ...
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
    async def add_outgoing(self, outgoing: Outgoing) -> None: ...
    async def set_wamid(self, command_id: str, wamid: str, *, replace: bool = True) -> bool:
        """Record the wamid of a send of ours; with ``replace`` False, only when it has none."""
        ...

    async def outgoing_by_wamid(self, wamid: str) -> Outgoing | None: ...
    async def outgoing_by_command(self, command_id: str) -> Outgoing | None: ...
    async def awaiting_wamid(self, recipient: str) -> bool: ...
    async def schedule(self, code: str, kind: TimerKind, due_at: datetime) -> None: ...
    async def cancel_timers(self, code: str) -> None: ...
    async def hold(self, recipient: str, code: str, command: SendMessage) -> bool: ...
    async def take_held(self, recipient: str) -> list[SendMessage]: ...
    async def counts(self) -> dict[str, int]: ...


# --------------------------------------------------------------------------- PostgreSQL


def _conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(**{f.name: row[f.name] for f in dataclasses.fields(Conversation)})


def _case(row: asyncpg.Record) -> Case:
    return Case(**{f.name: row[f.name] for f in dataclasses.fields(Case)})


def _outgoing(row: asyncpg.Record) -> Outgoing:
    values = {f.name: row[f.name] for f in dataclasses.fields(Outgoing)}
    return Outgoing(**values)


class PgRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def get_conversation(self, customer: str) -> Conversation | None:
        row = await self.conn.fetchrow("SELECT * FROM conversations WHERE customer = $1", customer)
        return _conversation(row) if row else None

    async def add_conversation(self, conversation: Conversation) -> Conversation:
        c = conversation
        row = await self.conn.fetchrow(
            "INSERT INTO conversations (customer, phone, user_id, name, phone_number_id,"
            " profile_id, state, case_code, last_inbound_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (customer) DO NOTHING RETURNING *",
            c.customer,
            c.phone,
            c.user_id,
            c.name,
            c.phone_number_id,
            c.profile_id,
            c.state,
            c.case_code,
            c.last_inbound_at,
        )
        if row is None:  # a concurrent first message from the same customer
            raise ConcurrentUpdate(f"conversation {c.customer} created concurrently")
        return _conversation(row)

    async def save_conversation(self, conversation: Conversation) -> None:
        c = conversation
        done = await self.conn.fetchval(
            "UPDATE conversations SET phone = $3, user_id = $4, name = $5, phone_number_id = $6,"
            " profile_id = $7, state = $8, case_code = $9, last_inbound_at = $10,"
            " version = version + 1, updated_at = now()"
            " WHERE customer = $1 AND version = $2 RETURNING version",
            c.customer,
            c.version,
            c.phone,
            c.user_id,
            c.name,
            c.phone_number_id,
            c.profile_id,
            c.state,
            c.case_code,
            c.last_inbound_at,
        )
        if done is None:
            raise ConcurrentUpdate(f"conversation {c.customer} changed concurrently")
        c.version = done

    async def next_case_number(self) -> int:
        value = await self.conn.fetchval("SELECT nextval('case_number')")
        return int(value)

    async def add_case(self, case: Case) -> None:
        try:
            async with self.conn.transaction():  # a savepoint: the caller's stays usable
                await self.conn.execute(
                    "INSERT INTO cases (code, customer, phone_number_id, profile_id, state,"
                    " trigger, agent, created_at, last_activity_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    case.code,
                    case.customer,
                    case.phone_number_id,
                    case.profile_id,
                    case.state,
                    case.trigger,
                    case.agent,
                    case.created_at,
                    case.last_activity_at,
                )
        except asyncpg.UniqueViolationError as error:
            raise ConcurrentUpdate(f"an open case exists for {case.customer}") from error

    async def get_case(self, code: str) -> Case | None:
        row = await self.conn.fetchrow("SELECT * FROM cases WHERE code = $1", code)
        return _case(row) if row else None

    async def claim_case(self, code: str, agent: str, at: datetime) -> Case | None:
        row = await self.conn.fetchrow(
            "UPDATE cases SET state = 'active', agent = $2, claimed_at = $3,"
            " last_activity_at = $3, version = version + 1"
            " WHERE code = $1 AND state = 'queued' RETURNING *",
            code,
            agent,
            at,
        )
        return _case(row) if row else None

    async def save_case(self, case: Case) -> None:
        done = await self.conn.fetchval(
            "UPDATE cases SET state = $3, agent = $4, end_reason = $5, claimed_at = $6,"
            " first_response_at = $7, closed_at = $8, last_activity_at = $9,"
            " version = version + 1 WHERE code = $1 AND version = $2 RETURNING version",
            case.code,
            case.version,
            case.state,
            case.agent,
            case.end_reason,
            case.claimed_at,
            case.first_response_at,
            case.closed_at,
            case.last_activity_at,
        )
        if done is None:
            raise ConcurrentUpdate(f"case {case.code} changed concurrently")
        case.version = done

    async def open_cases(self) -> list[Case]:
        rows = await self.conn.fetch(
            "SELECT * FROM cases WHERE state <> 'closed' ORDER BY created_at, code"
        )
        return [_case(r) for r in rows]

    async def get_agent(self, phone: str) -> Agent:
        row = await self.conn.fetchrow("SELECT * FROM agents WHERE phone = $1", phone)
        if row is None:
            return Agent(phone)
        return Agent(row["phone"], row["last_inbound_at"], row["current_case"])

    async def save_agent(self, agent: Agent) -> None:
        await self.conn.execute(
            "INSERT INTO agents (phone, last_inbound_at, current_case) VALUES ($1, $2, $3)"
            " ON CONFLICT (phone) DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at,"
            " current_case = EXCLUDED.current_case",
            agent.phone,
            agent.last_inbound_at,
            agent.current_case,
        )

    async def add_line(self, customer: str, line: Line) -> None:
        await self.conn.execute(
            "INSERT INTO messages (customer, case_code, at, author, text)"
            " VALUES ($1, $2, $3, $4, $5)",
            customer,
            line.case_code,
            line.at,
            line.author,
            line.text,
        )

    async def adopt_last_line(self, customer: str, code: str) -> None:
        """The message that asked for a human opens the case's transcript."""
        await self.conn.execute(
            "UPDATE messages SET case_code = $2 WHERE id = (SELECT max(id) FROM messages"
            " WHERE customer = $1) AND case_code IS NULL",
            customer,
            code,
        )

    async def last_lines(self, customer: str, limit: int) -> list[Line]:
        rows = await self.conn.fetch(
            "SELECT * FROM (SELECT * FROM messages WHERE customer = $1 ORDER BY id DESC LIMIT $2)"
            " recent ORDER BY id",
            customer,
            limit,
        )
        return [Line(r["at"], r["author"], r["text"], r["case_code"]) for r in rows]

    async def case_lines(self, code: str) -> list[Line]:
        rows = await self.conn.fetch(
            "SELECT * FROM messages WHERE case_code = $1 ORDER BY id", code
        )
        return [Line(r["at"], r["author"], r["text"], r["case_code"]) for r in rows]

    async def add_outgoing(self, outgoing: Outgoing) -> None:
        o = outgoing
        await self.conn.execute(
            "INSERT INTO outgoing (command_id, case_code, recipient, role, source_wamid, body)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (command_id) DO NOTHING",
            o.command_id,
            o.case_code,
            o.recipient,
            o.role,
            o.source_wamid,
            o.body,
        )

    async def set_wamid(self, command_id: str, wamid: str, *, replace: bool = True) -> bool:
        done = await self.conn.fetchval(
            "UPDATE outgoing SET wamid = $2 WHERE command_id = $1 AND ($3 OR wamid IS NULL)"
            " RETURNING true",
            command_id,
            wamid,
            replace,
        )
        return bool(done)

    async def outgoing_by_wamid(self, wamid: str) -> Outgoing | None:
        row = await self.conn.fetchrow("SELECT * FROM outgoing WHERE wamid = $1", wamid)
        return _outgoing(row) if row else None

    async def outgoing_by_command(self, command_id: str) -> Outgoing | None:
        row = await self.conn.fetchrow("SELECT * FROM outgoing WHERE command_id = $1", command_id)
        return _outgoing(row) if row else None

    async def awaiting_wamid(self, recipient: str) -> bool:
        """Sent (not held) to ``recipient`` recently, and its wamid not known yet."""
        found = await self.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM outgoing o WHERE o.recipient = $1"
            " AND o.wamid IS NULL AND o.created_at > now() - interval '10 minutes'"
            " AND NOT EXISTS (SELECT 1 FROM held h WHERE h.body->>'event_id' = o.command_id))",
            recipient,
        )
        return bool(found)

    async def schedule(self, code: str, kind: TimerKind, due_at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO timers (case_code, kind, due_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (case_code, kind) DO UPDATE SET due_at = EXCLUDED.due_at,"
            " fired_at = NULL",
            code,
            kind,
            due_at,
        )

    async def cancel_timers(self, code: str) -> None:
        await self.conn.execute("DELETE FROM timers WHERE case_code = $1", code)

    async def hold(self, recipient: str, code: str, command: SendMessage) -> bool:
        """Keep a send until ``recipient`` writes; True when nothing was held for them yet."""
        first = not await self.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM held WHERE recipient = $1)", recipient
        )
        await self.conn.execute(
            "INSERT INTO held (recipient, case_code, body) VALUES ($1, $2, $3::jsonb)",
            recipient,
            code,
            command.model_dump_json(),
        )
        return first

    async def take_held(self, recipient: str) -> list[SendMessage]:
        rows = await self.conn.fetch(
            "DELETE FROM held WHERE recipient = $1 RETURNING id, body", recipient
        )
        ordered = sorted(rows, key=lambda r: r["id"])
        return [SendMessage.model_validate(json.loads(r["body"])) for r in ordered]

    async def counts(self) -> dict[str, int]:
        rows = await self.conn.fetch(
            "SELECT state, count(*) AS n FROM cases WHERE state <> 'closed' GROUP BY state"
        )
        found = {r["state"]: int(r["n"]) for r in rows}
        return {"queued": found.get("queued", 0), "active": found.get("active", 0)}


# --------------------------------------------------------------------------- fake


@dataclass
class FakeRepository:
    """The same behaviour in memory, for unit tests of the handlers."""

    conversations: dict[str, Conversation] = field(default_factory=dict)
    cases: dict[str, Case] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    lines: list[tuple[str, Line]] = field(default_factory=list)
    outgoing: dict[str, Outgoing] = field(default_factory=dict)
    timers: dict[tuple[str, str], Timer] = field(default_factory=dict)
    held: list[tuple[str, str, SendMessage]] = field(default_factory=list)
    sequence: int = 1023

    async def get_conversation(self, customer: str) -> Conversation | None:
        found = self.conversations.get(customer)
        return dataclasses.replace(found) if found else None

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

    async def add_outgoing(self, outgoing: Outgoing) -> None:
        self.outgoing.setdefault(outgoing.command_id, outgoing)

    async def set_wamid(self, command_id: str, wamid: str, *, replace: bool = True) -> bool:
        found = self.outgoing.get(command_id)
        if found is None or (not replace and found.wamid is not None):
            return False
        self.outgoing[command_id] = dataclasses.replace(found, wamid=wamid)
        return True

    async def outgoing_by_wamid(self, wamid: str) -> Outgoing | None:
        return next((o for o in self.outgoing.values() if o.wamid == wamid), None)

    async def outgoing_by_command(self, command_id: str) -> Outgoing | None:
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
