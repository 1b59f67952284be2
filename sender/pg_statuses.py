"""Status webhooks applied to the message log in PostgreSQL, and the wamids learnt from them
(adoption of a send whose answer was lost; superseded wamids)."""

from __future__ import annotations

from datetime import datetime

from sender.store import (
    ACCEPTED_RANK,
    FAILED_RANK,
    PENDING_RANK,
    RANKS,
    ROW_COLUMNS,
    SENDING_RANK,
    SENT_RANK,
    Adoption,
    LogRow,
    OnDatabase,
    StatusChange,
    entry,
    error_json,
    log_row,
    status_reason,
)
from shared.events import MetaError


class PgStatusLog(OnDatabase):
    """Statuses and adoption (part of :class:`sender.pg_store.PostgresStore`)."""

    async def apply_status(
        self,
        wamid: str,
        status: str,
        at: datetime,
        error: MetaError | None,
        *,
        priced: bool = False,
    ) -> StatusChange | None:
        rank = RANKS[status]
        async with self.pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                "SELECT status_rank, billed FROM messages WHERE wamid = $1 FOR UPDATE", wamid
            )
            if before is None:
                return None
            old_rank = int(before["status_rank"])
            changed = old_rank < rank
            first_priced = priced and not before["billed"]
            if changed or first_priced:
                record = await conn.fetchrow(
                    _APPLY_SQL,
                    wamid,
                    status,
                    rank,
                    error_json(error),
                    status_reason(error),
                    entry(status=status, at=at.isoformat(), code=error.code if error else None),
                    changed,
                    first_priced,
                )
            else:
                record = await conn.fetchrow(
                    f"SELECT {ROW_COLUMNS} FROM messages WHERE wamid = $1", wamid
                )
            assert record is not None
            return StatusChange(
                row=log_row(record), old_rank=old_rank, changed=changed, first_priced=first_priced
            )

    async def adopt(self, wamid: str, phone_number_id: str, recipient: str) -> LogRow | None:
        """A status for an unknown wamid: if exactly one message to that recipient has an
        unknown outcome (claimed or retrying, no wamid), it is that one: record it accepted."""
        record = await self.pool.fetchrow(
            f"""
            WITH c AS (
                SELECT command_id FROM messages
                WHERE phone_number_id = $2 AND recipient = $3 AND wamid IS NULL
                  AND status_rank IN ({PENDING_RANK}, {SENDING_RANK}) AND attempts > 0
                  AND kind <> 'mark_read'
                LIMIT 2
            )
            UPDATE messages SET wamid = $1, status = 'accepted', status_rank = {ACCEPTED_RANK},
                claimed_until = NULL, updated_at = now(), timeline = timeline || $4::jsonb
            WHERE command_id IN (SELECT command_id FROM c) AND (SELECT count(*) FROM c) = 1
            RETURNING {ROW_COLUMNS}
            """,
            wamid,
            phone_number_id,
            recipient,
            entry(status="accepted", wamid=wamid, event="adopted_from_status"),
        )
        return log_row(record) if record is not None else None

    async def adopt_sent(self, wamid: str, command_id: str) -> Adoption:
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                f"SELECT {ROW_COLUMNS} FROM messages WHERE command_id = $1 FOR UPDATE", command_id
            )
            if record is None:
                return Adoption("none")
            row = log_row(record)
            if row.wamid == wamid:  # another status of it adopted it a moment ago
                return Adoption("known", row)
            if row.wamid is not None:
                await conn.execute(
                    "INSERT INTO superseded_wamids (wamid, command_id, reason)"
                    " VALUES ($1, $2, 'duplicate') ON CONFLICT DO NOTHING",
                    wamid,
                    command_id,
                )
                return Adoption("duplicate", row)
            if row.status_rank >= ACCEPTED_RANK and row.status_rank != FAILED_RANK:
                return Adoption("none")  # accepted without a wamid: a read receipt
            adopted = row.status_rank < ACCEPTED_RANK
            record = await conn.fetchrow(
                f"""
                UPDATE messages SET wamid = $2, updated_at = now(),
                    status = CASE WHEN $3 THEN 'accepted' ELSE status END,
                    status_rank = CASE WHEN $3 THEN {ACCEPTED_RANK} ELSE status_rank END,
                    claimed_until = CASE WHEN $3 THEN NULL ELSE claimed_until END,
                    timeline = timeline || $4::jsonb
                WHERE command_id = $1 RETURNING {ROW_COLUMNS}
                """,
                command_id,
                wamid,
                adopted,
                entry(status="accepted", wamid=wamid, event="adopted_from_tagged_status"),
            )
            assert record is not None
            return Adoption("adopted" if adopted else "late", log_row(record))

    async def reopen_for_fallback(self, wamid: str, error: MetaError) -> tuple[str, bool] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # The one transition back: accepted (or sent) to pending, for the fallback's send.
            record = await conn.fetchrow(
                f"""
                UPDATE messages SET status = 'pending', status_rank = {PENDING_RANK}, wamid = NULL,
                    used_fallback = true, claimed_until = NULL, error = $2::jsonb,
                    reason = 'outside the 24-hour window (131047): sending the fallback template',
                    updated_at = now(), timeline = timeline || $3::jsonb
                WHERE wamid = $1 AND NOT used_fallback
                    AND status_rank IN ({ACCEPTED_RANK}, {SENT_RANK})
                    AND jsonb_typeof(command -> 'fallback_template') = 'object'
                RETURNING command_id, command::text AS command
                """,
                wamid,
                error_json(error),
                entry(event="fallback_template", wamid=wamid, code=error.code),
            )
            if record is not None:
                await conn.execute(
                    "INSERT INTO superseded_wamids (wamid, command_id) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING",
                    wamid,
                    record["command_id"],
                )
                return str(record["command"]), True
            command = await conn.fetchval(
                "SELECT m.command::text FROM superseded_wamids s"
                " JOIN messages m ON m.command_id = s.command_id WHERE s.wamid = $1",
                wamid,
            )
            return (str(command), False) if command is not None else None

    async def superseded(self, wamid: str) -> bool:
        found = await self.pool.fetchval(
            "SELECT true FROM superseded_wamids WHERE wamid = $1", wamid
        )
        return bool(found)


# The status moves the row forward ($7), and/or its pricing is counted now ($8).
_APPLY_SQL = f"""
UPDATE messages SET
    status = CASE WHEN $7 THEN $2 ELSE status END,
    status_rank = CASE WHEN $7 THEN $3::smallint ELSE status_rank END,
    error = CASE WHEN $7 THEN COALESCE($4::jsonb, error) ELSE error END,
    reason = CASE WHEN $7 AND $3::smallint = {FAILED_RANK} THEN $5 ELSE reason END,
    billed = billed OR $8,
    updated_at = now(),
    timeline = CASE WHEN $7 THEN timeline || $6::jsonb ELSE timeline END
WHERE wamid = $1 RETURNING {ROW_COLUMNS}
"""
