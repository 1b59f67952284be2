"""The message log in PostgreSQL: claims, Meta's answers, releases and failures.

Claims and acceptances run once per message: they are group-committed (``shared.batching``) on
connections kept out of the pool, and a statement whose kept connection turns out to be gone
(a PostgreSQL restart) runs again on a fresh one (they are safe to repeat).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sender.store import (
    ACCEPTED_RANK,
    FAILED_RANK,
    PATIENT_CLAIM_SECONDS,
    PENDING_RANK,
    ROW_COLUMNS,
    SENDING_RANK,
    Claim,
    LogRow,
    NewMessage,
    OnDatabase,
    entry,
    error_json,
    log_row,
)
from shared.batching import Batcher, HeldConnections
from shared.events import Event, MetaError
from shared.outbox import outbox_columns, outbox_insert
from shared.resources import Database

if TYPE_CHECKING:
    from shared.batching import PoolConnection


class PgMessageLog(OnDatabase):
    """The message log's statements. Claims and acceptances are the per-message ones:
    group-committed under load, on connections kept for them (see HeldConnections)."""

    def __init__(
        self,
        database: Database,
        *,
        held: HeldConnections | None = None,
        outbox_written: Callable[[], None] | None = None,
    ) -> None:
        self.database = database
        self._own_held = held is None  # else the caller closes it
        self._held = held or HeldConnections(lambda: database.pool)
        self._claims: Batcher[tuple[NewMessage, float], Claim] = Batcher(self._claim_batch)
        # Under a backlog every send waits for a slot, far longer than this: its claim can wait
        # for a few more (one statement for a dozen claims instead of one each).
        self._patient_claims: Batcher[tuple[NewMessage, float], Claim] = Batcher(
            self._claim_batch, parallel=1, delay=PATIENT_CLAIM_SECONDS
        )
        self._accepts: Batcher[tuple[str, str | None, Event | None], None] = Batcher(
            self._accept_batch
        )
        self._outbox_written = outbox_written  # wakes the relay

    async def start(self) -> None:
        return None  # the database is started before; connections are kept on first use

    async def close(self) -> None:
        """Give back the connections kept for the batched statements (before the pool closes)."""
        if self._own_held:
            await self._held.close()

    async def claim(
        self, message: NewMessage, lease_seconds: float, *, patient: bool = False
    ) -> Claim:
        batcher = self._patient_claims if patient else self._claims
        return await batcher.submit((message, lease_seconds))

    async def _claim_batch(self, items: list[tuple[NewMessage, float]]) -> list[Claim]:
        unique: dict[str, tuple[NewMessage, float]] = {}
        for message, lease in items:
            unique.setdefault(message.command_id, (message, lease))
        messages = [m for m, _ in unique.values()]
        lease = max(lease for _, lease in unique.values())
        return await self._held.run(lambda conn: self._claim_on(conn, items, messages, lease))

    async def _claim_on(
        self,
        conn: PoolConnection,
        items: list[tuple[NewMessage, float]],
        messages: list[NewMessage],
        lease: float,
    ) -> list[Claim]:
        records = await conn.fetch(
            _CLAIM_SQL,
            [m.command_id for m in messages],
            [m.phone_number_id for m in messages],
            [m.recipient for m in messages],
            [m.kind for m in messages],
            [m.command_json for m in messages],
            [m.valid_until for m in messages],
            float(lease),
            [m.marketing for m in messages],
        )
        claimed = {r["command_id"]: _claimed(r) for r in records}
        others: dict[str, Claim] = {}
        missing = [m.command_id for m in messages if m.command_id not in claimed]
        if missing:
            rows = await conn.fetch(
                f"SELECT {ROW_COLUMNS} FROM messages WHERE command_id = ANY($1::text[])", missing
            )
            for record in rows:
                row = log_row(record)
                outcome: Literal["done", "busy"] = (
                    "done" if row.status_rank >= ACCEPTED_RANK else "busy"
                )
                others[row.command_id] = Claim(outcome, row)
        answers: list[Claim] = []
        seen: set[str] = set()
        for message, _ in items:
            cid = message.command_id
            if cid in seen:  # the same command twice in one batch: the other copy has it
                answers.append(Claim("busy"))
                continue
            seen.add(cid)
            answers.append(claimed.get(cid) or others.get(cid) or Claim("busy"))
        return answers

    async def get(self, command_id: str) -> LogRow | None:
        record = await self.pool.fetchrow(
            f"SELECT {ROW_COLUMNS} FROM messages WHERE command_id = $1", command_id
        )
        return log_row(record) if record is not None else None

    async def save_media(self, command_id: str, media_id: str) -> None:
        await self.pool.execute(
            "UPDATE messages SET media_id = $2, updated_at = now() WHERE command_id = $1",
            command_id,
            media_id,
        )

    async def use_fallback(self, command_id: str) -> None:
        await self.pool.execute(
            "UPDATE messages SET used_fallback = true, updated_at = now(),"
            " timeline = timeline || $2::jsonb WHERE command_id = $1",
            command_id,
            entry(event="fallback_template"),
        )

    async def accepted(
        self, command_id: str, wamid: str | None, result: Event | None = None
    ) -> None:
        await self._accepts.submit((command_id, wamid, result))

    async def _accept_batch(self, items: list[tuple[str, str | None, Event | None]]) -> list[None]:
        # One statement (one transaction) for the log rows and their result events: the
        # acceptance and its MessageSent are durable together, in one round trip.
        events = [e for _, _, e in items if e is not None]
        columns = outbox_columns(events)
        await self._held.run(
            lambda conn: conn.execute(
                _ACCEPT_SQL, [c for c, _, _ in items], [w for _, w, _ in items], *columns
            )
        )
        if events and self._outbox_written is not None:
            self._outbox_written()
        return [None] * len(items)

    async def release(
        self,
        command_id: str,
        reason: str,
        error: MetaError | None,
        *,
        not_before: datetime | None = None,
    ) -> None:
        await self.pool.execute(
            f"""
            UPDATE messages SET status = 'pending', status_rank = {PENDING_RANK},
                claimed_until = NULL, reason = $2, error = COALESCE($3::jsonb, error),
                not_before = COALESCE($5, not_before),
                updated_at = now(), timeline = timeline || $4::jsonb
            WHERE command_id = $1 AND status_rank = {SENDING_RANK}
            """,
            command_id,
            reason,
            error_json(error),
            entry(event="retry", reason=reason, code=error.code if error else None),
            not_before,
        )

    async def interrupted(self, command_id: str, hold_seconds: float) -> None:
        await self.pool.execute(
            "UPDATE messages SET claimed_until = now() + make_interval(secs => $3),"
            " updated_at = now(), reason = 'interrupted while Meta may have had the request',"
            " timeline = timeline || $2::jsonb"
            f" WHERE command_id = $1 AND status_rank = {SENDING_RANK}",
            command_id,
            entry(event="interrupted"),
            float(hold_seconds),
        )

    async def failed(
        self,
        message: NewMessage,
        reason: str,
        error: MetaError | None,
        reason_code: str | None = None,
    ) -> bool:
        changed = await self.pool.fetchval(
            f"""
            INSERT INTO messages AS m (command_id, phone_number_id, recipient, kind, command,
                status, status_rank, reason, error, valid_until, timeline, reason_code)
            VALUES ($1, $2, $3, $4, $5::jsonb, 'failed', {FAILED_RANK}, $6, $7::jsonb, $8,
                jsonb_build_array($9::jsonb), $10)
            ON CONFLICT (command_id) DO UPDATE SET
                status = 'failed', status_rank = {FAILED_RANK}, reason = EXCLUDED.reason,
                error = EXCLUDED.error, claimed_until = NULL, updated_at = now(),
                reason_code = EXCLUDED.reason_code, timeline = m.timeline || $9::jsonb
                WHERE m.status_rank < {ACCEPTED_RANK}
            RETURNING true
            """,
            message.command_id,
            message.phone_number_id,
            message.recipient,
            message.kind,
            message.command_json,
            reason,
            error_json(error),
            message.valid_until,
            entry(status="failed", reason=reason, code=error.code if error else None),
            reason_code,
        )
        return bool(changed)


_ACCEPT_SQL = f"""
WITH accepted AS (
    UPDATE messages m SET
        status = CASE WHEN m.status_rank < {ACCEPTED_RANK} THEN 'accepted' ELSE m.status END,
        status_rank = GREATEST(m.status_rank, {ACCEPTED_RANK}),
        -- A wamid learnt first (from a status, when this try's answer came late) stays.
        wamid = COALESCE(m.wamid, u.wamid),
        claimed_until = NULL, updated_at = now(),
        timeline = m.timeline || jsonb_strip_nulls(jsonb_build_object(
            'status', 'accepted', 'at', now(), 'wamid', u.wamid))
    FROM unnest($1::text[], $2::text[]) AS u(command_id, wamid)
    WHERE m.command_id = u.command_id
)
{outbox_insert(3)}
"""


# A new row, or one no try has now (pending, or its lease ran out), becomes this try's.
_CLAIM_SQL = f"""
INSERT INTO messages AS m (command_id, phone_number_id, recipient, kind, command,
    status, status_rank, attempts, claimed_until, valid_until, marketing)
SELECT i.command_id, i.phone_number_id, i.recipient, i.kind, i.command::jsonb,
    'sending', {SENDING_RANK}, 1, now() + make_interval(secs => $7), i.valid_until, i.marketing
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
    $8::boolean[])
    AS i(command_id, phone_number_id, recipient, kind, command, valid_until, marketing)
ON CONFLICT (command_id) DO UPDATE SET
    status = 'sending', status_rank = {SENDING_RANK}, attempts = m.attempts + 1,
    claimed_until = now() + make_interval(secs => $7), updated_at = now(),
    taken_over = m.status_rank = {SENDING_RANK}
    WHERE m.status_rank = {PENDING_RANK}
        OR (m.status_rank = {SENDING_RANK} AND m.claimed_until < now())
RETURNING m.command_id, m.attempts, m.used_fallback, m.media_id, m.taken_over, m.not_before,
    customer_of(m.recipient) AS customer,
    m.marketing AND marketing_stopped(m.recipient) AS marketing_stopped,
    (SELECT extract(epoch FROM b.until - now())::float8 FROM recipient_backoff b
      WHERE b.phone_number_id = m.phone_number_id AND b.recipient = customer_of(m.recipient)
        AND b.until > now()) AS backoff_left
"""


def _claimed(record: Any) -> Claim:
    return Claim(
        "claimed",
        attempts=record["attempts"],
        used_fallback=record["used_fallback"],
        media_id=record["media_id"],
        backoff_left=float(record["backoff_left"] or 0.0),
        taken_over=record["taken_over"],
        customer=record["customer"],
        marketing_stopped=bool(record["marketing_stopped"]),
        not_before=record["not_before"],
    )
