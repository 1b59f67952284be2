"""Handoff's state in PostgreSQL: the adapter of :class:`handoff.repository.Repository`.

Each method runs on the caller's connection, inside its transaction (see the port).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

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
from shared import timers
from shared.db import Connection
from shared.events import InboundMessage, SendMessage

# The columns a conversation is written with: its fields but the version (the key first).
_CONVERSATION_COLUMNS = tuple(
    f.name for f in dataclasses.fields(Conversation) if f.name != "version"
)


def _placeholders(count: int) -> str:
    return ", ".join(f"${n}" for n in range(1, count + 1))


def _conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(**{f.name: row[f.name] for f in dataclasses.fields(Conversation)})


def _case(row: asyncpg.Record) -> Case:
    return Case(**{f.name: row[f.name] for f in dataclasses.fields(Case)})


def _draft(row: asyncpg.Record) -> Draft:
    message = InboundMessage.model_validate_json(row["message"])
    return Draft(row["agent"], message, row["text"], row["created_at"])


def _send_record(row: asyncpg.Record) -> SendRecord:
    values = {f.name: row[f.name] for f in dataclasses.fields(SendRecord)}
    return SendRecord(**values)


class PgRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def get_conversation(self, customer: str) -> Conversation | None:
        row = await self.conn.fetchrow("SELECT * FROM conversations WHERE customer = $1", customer)
        return _conversation(row) if row else None

    async def find_conversation(
        self, identifiers: Sequence[str], at: datetime
    ) -> Conversation | None:
        row = await self.conn.fetchrow(
            "SELECT c.* FROM customer_ids i JOIN conversations c ON c.customer = i.customer"
            " WHERE i.identifier = ANY($1::text[]) AND (i.retired_at IS NULL OR i.retired_at >= $2)"
            " ORDER BY array_position($1::text[], i.identifier) LIMIT 1",
            list(identifiers),
            at,
        )
        return _conversation(row) if row else None

    async def identifiers_of(self, customer: str) -> dict[str, datetime | None]:
        rows = await self.conn.fetch(
            "SELECT identifier, retired_at FROM customer_ids WHERE customer = $1", customer
        )
        return {r["identifier"]: r["retired_at"] for r in rows}

    async def link_identifiers(
        self, customer: str, identifiers: Sequence[str], *, take: bool = False
    ) -> None:
        await self.conn.execute(
            "INSERT INTO customer_ids (identifier, customer) SELECT unnest($2::text[]), $1"
            " ON CONFLICT (identifier) DO UPDATE SET customer = EXCLUDED.customer,"
            " retired_at = NULL WHERE customer_ids.retired_at IS NOT NULL"
            " OR ($3 AND customer_ids.customer <> EXCLUDED.customer)",
            customer,
            list(identifiers),
            take,
        )

    async def retire_identifiers(
        self, customer: str, identifiers: Sequence[str], at: datetime
    ) -> None:
        await self.conn.execute(
            "UPDATE customer_ids SET retired_at = $3 WHERE customer = $1"
            " AND identifier = ANY($2::text[]) AND retired_at IS NULL",
            customer,
            list(identifiers),
            at,
        )

    async def add_conversation(self, conversation: Conversation) -> Conversation:
        values = dataclasses.asdict(conversation)
        row = await self.conn.fetchrow(
            f"INSERT INTO conversations ({', '.join(_CONVERSATION_COLUMNS)})"
            f" VALUES ({_placeholders(len(_CONVERSATION_COLUMNS))})"
            " ON CONFLICT (customer) DO NOTHING RETURNING *",
            *(values[column] for column in _CONVERSATION_COLUMNS),
        )
        if row is None:  # a concurrent first message from the same customer
            raise ConcurrentUpdate(f"conversation {conversation.customer} created concurrently")
        return _conversation(row)

    async def save_conversation(self, conversation: Conversation) -> None:
        c = conversation
        values = dataclasses.asdict(c)
        columns = _CONVERSATION_COLUMNS[1:]  # all but the key
        assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(columns, 3))
        done = await self.conn.fetchval(
            f"UPDATE conversations SET {assignments}, version = version + 1, updated_at = now()"
            " WHERE customer = $1 AND version = $2 RETURNING version",
            c.customer,
            c.version,
            *(values[column] for column in columns),
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
        return Agent(row["phone"], row["last_inbound_at"], row["current_case"], row["paused"])

    async def save_agent(self, agent: Agent) -> None:
        await self.conn.execute(
            "INSERT INTO agents (phone, last_inbound_at, current_case, paused)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (phone) DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at,"
            " current_case = EXCLUDED.current_case, paused = EXCLUDED.paused",
            agent.phone,
            agent.last_inbound_at,
            agent.current_case,
            agent.paused,
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

    async def add_outgoing(self, record: SendRecord) -> None:
        await self.conn.execute(
            "INSERT INTO outgoing (command_id, case_code, recipient, role, source_wamid, body)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (command_id) DO NOTHING",
            record.command_id,
            record.case_code,
            record.recipient,
            record.role,
            record.source_wamid,
            record.body,
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

    async def outgoing_by_wamid(self, wamid: str) -> SendRecord | None:
        row = await self.conn.fetchrow("SELECT * FROM outgoing WHERE wamid = $1", wamid)
        return _send_record(row) if row else None

    async def outgoing_by_command(self, command_id: str) -> SendRecord | None:
        row = await self.conn.fetchrow("SELECT * FROM outgoing WHERE command_id = $1", command_id)
        return _send_record(row) if row else None

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
        await timers.schedule(self.conn, code, kind, due_at)

    async def cancel_timers(self, code: str) -> None:
        await timers.cancel(self.conn, code)

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

    async def keep_draft(self, draft: Draft) -> None:
        await self.conn.execute(
            "INSERT INTO drafts (agent, wamid, message, text, created_at)"
            " VALUES ($1, $2, $3::jsonb, $4, $5) ON CONFLICT (wamid) DO NOTHING",
            draft.agent,
            draft.message.wamid,
            draft.message.model_dump_json(),
            draft.text,
            draft.at,
        )

    async def drafts_of(self, agent: str) -> list[Draft]:
        rows = await self.conn.fetch(
            "SELECT * FROM drafts WHERE agent = $1 ORDER BY id FOR UPDATE", agent
        )
        return [_draft(r) for r in rows]

    async def take_drafts(self, agent: str) -> list[Draft]:
        rows = await self.conn.fetch("DELETE FROM drafts WHERE agent = $1 RETURNING *", agent)
        return [_draft(r) for r in sorted(rows, key=lambda r: r["id"])]

    # ------------------------------------------------------------ agents' features (issue 15)

    async def add_transfer(self, transfer: Transfer) -> None:
        await self.conn.execute(
            "INSERT INTO transfers (case_code, from_agent, to_agent, at, reason)"
            " VALUES ($1, $2, $3, $4, $5)",
            *dataclasses.astuple(transfer),
        )

    async def transfers(self, code: str) -> list[Transfer]:
        rows = await self.conn.fetch(
            "SELECT case_code, from_agent, to_agent, at, reason FROM transfers"
            " WHERE case_code = $1 ORDER BY id",
            code,
        )
        return [Transfer(*r) for r in rows]

    async def offer_reply(self, code: str, from_agent: str, at: datetime) -> bool:
        done = await self.conn.fetchval(
            "INSERT INTO reply_offers (case_code, from_agent, offered_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (case_code) DO NOTHING RETURNING true",
            code,
            from_agent,
            at,
        )
        return bool(done)

    async def take_offer(self, code: str) -> str | None:
        taken: str | None = await self.conn.fetchval(
            "DELETE FROM reply_offers WHERE case_code = $1 RETURNING from_agent", code
        )
        return taken

    async def offer_rating(self, code: str) -> None:
        await self.conn.execute("UPDATE cases SET rating_state = 'offered' WHERE code = $1", code)

    async def settle_rating(self, code: str, state: RatingState, score: int | None) -> bool:
        done = await self.conn.fetchval(
            "UPDATE cases SET rating_state = $2, rating = $3, rated_at = now()"
            " WHERE code = $1 AND rating_state = 'offered' RETURNING true",
            code,
            state,
            score,
        )
        return bool(done)

    async def rating_of(self, code: str) -> Rating | None:
        row = await self.conn.fetchrow(
            "SELECT rating_state, rating FROM cases WHERE code = $1", code
        )
        if row is None or row["rating_state"] is None:
            return None
        return Rating(row["rating_state"], row["rating"])
