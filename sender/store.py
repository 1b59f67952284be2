"""The sender's repository port (:class:`SenderStore`), its PostgreSQL adapter and a fake.

The message log is the idempotency record: a row is claimed (``sending``, with a lease) before
the Graph API call and updated with Meta's answer after it. Status ranks only grow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from shared.batching import Batcher, HeldConnections
from shared.db import Pool
from shared.events import Event, MetaError
from shared.outbox import outbox_columns, outbox_insert

if TYPE_CHECKING:
    from shared.batching import PoolConnection

RANKS: dict[str, int] = {
    "pending": 0,
    "sending": 1,
    "accepted": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "played": 6,
    "failed": 9,
}
# The ranks the SQL below names (interpolated: RANKS is their one definition).
PENDING_RANK = RANKS["pending"]
SENDING_RANK = RANKS["sending"]
ACCEPTED_RANK = RANKS["accepted"]
SENT_RANK = RANKS["sent"]
FAILED_RANK = RANKS["failed"]
# Retention (shared.db.prune, $1 = RETENTION_DAYS, $2 = batch): log rows untouched for that long
# whose validity ended as long ago (no redelivery of their command can come any more), and the
# superseded wamids and recipient backoffs of that age.
PRUNING = (
    "DELETE FROM messages WHERE ctid = ANY(ARRAY(SELECT ctid FROM messages"
    " WHERE updated_at < now() - $1 * interval '1 day'"
    " AND valid_until < now() - $1 * interval '1 day' LIMIT $2))",
    "DELETE FROM superseded_wamids WHERE ctid = ANY(ARRAY(SELECT ctid FROM superseded_wamids"
    " WHERE at < now() - $1 * interval '1 day' LIMIT $2))",
    "DELETE FROM recipient_backoff WHERE ctid = ANY(ARRAY(SELECT ctid FROM recipient_backoff"
    " WHERE until < now() - $1 * interval '1 day' LIMIT $2))",
)
# How long a patient claim may wait for others to share its statement (seconds).
PATIENT_CLAIM_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class LogRow:
    command_id: str
    phone_number_id: str
    recipient: str
    kind: str
    status: str
    status_rank: int
    wamid: str | None
    attempts: int
    used_fallback: bool
    media_id: str | None
    reason: str | None
    error: MetaError | None
    lease_left: float  # seconds until another replica may take it over (<= 0: free)


@dataclass(frozen=True, slots=True)
class NewMessage:
    command_id: str
    phone_number_id: str
    recipient: str
    kind: str
    command_json: str
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """``claimed``: ours to send now; ``done``: settled before; ``busy``: another try is live."""

    outcome: Literal["claimed", "done", "busy"]
    row: LogRow | None = None
    attempts: int = 0
    used_fallback: bool = False
    media_id: str | None = None
    backoff_left: float = 0.0  # the recipient is in a 131056 backoff for this long
    # The try before this one stopped mid-way (its lease ran out or it was interrupted): Meta
    # may have its request.
    taken_over: bool = False


@dataclass(frozen=True, slots=True)
class StatusChange:
    row: LogRow  # after the update
    old_rank: int
    changed: bool


@dataclass(frozen=True, slots=True)
class Adoption:
    """What a status naming its command (shared.send_ref) says of a wamid the log lacks.

    ``adopted``: the command's answer was lost; the wamid is now its own. ``duplicate``: the
    command already has another wamid, so Meta took it twice (kept as superseded: its statuses
    are not counted). ``late``: the command ended failed, yet Meta took it (the wamid is kept
    on the row; the status stays failed). ``none``: no such command in the log.
    """

    outcome: Literal["adopted", "duplicate", "late", "none"]
    row: LogRow | None = None


class SenderStore(Protocol):
    async def claim(
        self, message: NewMessage, lease_seconds: float, *, patient: bool = False
    ) -> Claim:
        """Take the message's log row for a try (see :class:`Claim`). ``patient``: the send
        waits for its slot longer than :data:`PATIENT_CLAIM_SECONDS` anyway, so the claim may
        wait that long to share its statement with others."""
        ...

    async def get(self, command_id: str) -> LogRow | None: ...

    async def save_media(self, command_id: str, media_id: str) -> None: ...

    async def use_fallback(self, command_id: str) -> None: ...

    async def accepted(
        self, command_id: str, wamid: str | None, result: Event | None = None
    ) -> None:
        """Record Meta's answer and, atomically with it, ``result`` in the outbox."""
        ...

    async def release(self, command_id: str, reason: str, error: MetaError | None) -> None: ...

    async def interrupted(self, command_id: str, hold_seconds: float) -> None:
        """A try stopped while Meta may have had its request: the next try takes over in
        ``hold_seconds`` (not at the end of the lease), and waits for a status first (see
        Claim.taken_over)."""
        ...

    async def failed(self, message: NewMessage, reason: str, error: MetaError | None) -> bool: ...

    async def apply_status(
        self, wamid: str, status: str, at: datetime, error: MetaError | None
    ) -> StatusChange | None: ...

    async def adopt(self, wamid: str, phone_number_id: str, recipient: str) -> LogRow | None: ...

    async def adopt_sent(self, wamid: str, command_id: str) -> Adoption:
        """A status for ``wamid``, tagged with the command that sent it (see :class:`Adoption`)."""
        ...

    async def reopen_for_fallback(self, wamid: str, error: MetaError) -> tuple[str, bool] | None:
        """Meta accepted ``wamid`` and then reported it outside the 24 h window (131047): when
        its command has a fallback template not yet used, put the message back to be sent with
        it (the wamid is kept as superseded). The command's JSON and whether it was reopened
        now (False: done before for this wamid); None when there is nothing to fall back to."""
        ...

    async def superseded(self, wamid: str) -> bool:
        """Whether ``wamid`` was replaced by a fallback template's send."""
        ...

    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float, backdate: float
    ) -> tuple[float, float]: ...

    async def open_circuit(self, phone_number_id: str, reason: str) -> int | None: ...

    async def close_circuit(self, phone_number_id: str) -> bool: ...

    async def open_circuits(self) -> list[str]: ...

    async def backoff_recipient(
        self, phone_number_id: str, recipient: str, unit: float, cap: float
    ) -> float: ...


def _error_json(error: MetaError | None) -> str | None:
    return error.model_dump_json(exclude_none=True) if error is not None else None


def _entry(**values: Any) -> str:
    values.setdefault("at", datetime.now(UTC).isoformat())
    return orjson.dumps({k: v for k, v in values.items() if v is not None}).decode()


_ROW = (
    "command_id, phone_number_id, recipient, kind, status, status_rank, wamid, attempts,"
    " used_fallback, media_id, reason, error::text AS error,"
    " COALESCE(extract(epoch FROM claimed_until - now()), 0)::float8 AS lease_left"
)


def _row(record: Any) -> LogRow:
    error = record["error"]
    return LogRow(
        command_id=record["command_id"],
        phone_number_id=record["phone_number_id"],
        recipient=record["recipient"],
        kind=record["kind"],
        status=record["status"],
        status_rank=record["status_rank"],
        wamid=record["wamid"],
        attempts=record["attempts"],
        used_fallback=record["used_fallback"],
        media_id=record["media_id"],
        reason=record["reason"],
        error=MetaError.model_validate_json(error) if error else None,
        lease_left=float(record["lease_left"]),
    )


class PostgresStore:
    def __init__(
        self,
        pool: Pool,
        *,
        held: HeldConnections | None = None,
        outbox_written: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        # Claims and acceptances are the per-message statements: group-committed under load,
        # on connections kept for them (see HeldConnections).
        self._own_held = held is None  # else the caller closes it
        self._held = held or HeldConnections(pool)
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
            f"""
            INSERT INTO messages AS m (command_id, phone_number_id, recipient, kind, command,
                status, status_rank, attempts, claimed_until, valid_until)
            SELECT i.command_id, i.phone_number_id, i.recipient, i.kind, i.command::jsonb,
                'sending', {SENDING_RANK}, 1, now() + make_interval(secs => $7), i.valid_until
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::timestamptz[])
                AS i(command_id, phone_number_id, recipient, kind, command, valid_until)
            ON CONFLICT (command_id) DO UPDATE SET
                status = 'sending', status_rank = {SENDING_RANK}, attempts = m.attempts + 1,
                claimed_until = now() + make_interval(secs => $7), updated_at = now(),
                taken_over = m.status_rank = {SENDING_RANK}
                WHERE m.status_rank = {PENDING_RANK}
                    OR (m.status_rank = {SENDING_RANK} AND m.claimed_until < now())
            RETURNING m.command_id, m.attempts, m.used_fallback, m.media_id, m.taken_over,
                (SELECT extract(epoch FROM b.until - now())::float8 FROM recipient_backoff b
                  WHERE b.phone_number_id = m.phone_number_id AND b.recipient = m.recipient
                    AND b.until > now()) AS backoff_left
            """,
            [m.command_id for m in messages],
            [m.phone_number_id for m in messages],
            [m.recipient for m in messages],
            [m.kind for m in messages],
            [m.command_json for m in messages],
            [m.valid_until for m in messages],
            float(lease),
        )
        claimed = {
            r["command_id"]: Claim(
                "claimed",
                attempts=r["attempts"],
                used_fallback=r["used_fallback"],
                media_id=r["media_id"],
                backoff_left=float(r["backoff_left"] or 0.0),
                taken_over=r["taken_over"],
            )
            for r in records
        }
        others: dict[str, Claim] = {}
        missing = [m.command_id for m in messages if m.command_id not in claimed]
        if missing:
            rows = await conn.fetch(
                f"SELECT {_ROW} FROM messages WHERE command_id = ANY($1::text[])", missing
            )
            for record in rows:
                row = _row(record)
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
            f"SELECT {_ROW} FROM messages WHERE command_id = $1", command_id
        )
        return _row(record) if record is not None else None

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
            _entry(event="fallback_template"),
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

    async def release(self, command_id: str, reason: str, error: MetaError | None) -> None:
        await self.pool.execute(
            f"""
            UPDATE messages SET status = 'pending', status_rank = {PENDING_RANK},
                claimed_until = NULL, reason = $2, error = COALESCE($3::jsonb, error),
                updated_at = now(), timeline = timeline || $4::jsonb
            WHERE command_id = $1 AND status_rank = {SENDING_RANK}
            """,
            command_id,
            reason,
            _error_json(error),
            _entry(event="retry", reason=reason, code=error.code if error else None),
        )

    async def interrupted(self, command_id: str, hold_seconds: float) -> None:
        await self.pool.execute(
            "UPDATE messages SET claimed_until = now() + make_interval(secs => $3),"
            " updated_at = now(), reason = 'interrupted while Meta may have had the request',"
            " timeline = timeline || $2::jsonb"
            f" WHERE command_id = $1 AND status_rank = {SENDING_RANK}",
            command_id,
            _entry(event="interrupted"),
            float(hold_seconds),
        )

    async def failed(self, message: NewMessage, reason: str, error: MetaError | None) -> bool:
        changed = await self.pool.fetchval(
            f"""
            INSERT INTO messages AS m (command_id, phone_number_id, recipient, kind, command,
                status, status_rank, reason, error, valid_until, timeline)
            VALUES ($1, $2, $3, $4, $5::jsonb, 'failed', {FAILED_RANK}, $6, $7::jsonb, $8,
                jsonb_build_array($9::jsonb))
            ON CONFLICT (command_id) DO UPDATE SET
                status = 'failed', status_rank = {FAILED_RANK}, reason = EXCLUDED.reason,
                error = EXCLUDED.error, claimed_until = NULL, updated_at = now(),
                timeline = m.timeline || $9::jsonb
                WHERE m.status_rank < {ACCEPTED_RANK}
            RETURNING true
            """,
            message.command_id,
            message.phone_number_id,
            message.recipient,
            message.kind,
            message.command_json,
            reason,
            _error_json(error),
            message.valid_until,
            _entry(status="failed", reason=reason, code=error.code if error else None),
        )
        return bool(changed)

    async def apply_status(
        self, wamid: str, status: str, at: datetime, error: MetaError | None
    ) -> StatusChange | None:
        rank = RANKS[status]
        async with self.pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                "SELECT status_rank FROM messages WHERE wamid = $1 FOR UPDATE", wamid
            )
            if before is None:
                return None
            old_rank = int(before["status_rank"])
            changed = old_rank < rank
            if changed:
                record = await conn.fetchrow(
                    f"""
                    UPDATE messages SET status = $2, status_rank = $3::smallint,
                        error = COALESCE($4::jsonb, error),
                        reason = CASE WHEN $3::smallint = {FAILED_RANK} THEN $5 ELSE reason END,
                        updated_at = now(), timeline = timeline || $6::jsonb
                    WHERE wamid = $1 RETURNING {_ROW}
                    """,
                    wamid,
                    status,
                    rank,
                    _error_json(error),
                    _status_reason(error),
                    _entry(status=status, at=at.isoformat(), code=error.code if error else None),
                )
            else:
                record = await conn.fetchrow(f"SELECT {_ROW} FROM messages WHERE wamid = $1", wamid)
            assert record is not None
            return StatusChange(row=_row(record), old_rank=old_rank, changed=changed)

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
            RETURNING {_ROW}
            """,
            wamid,
            phone_number_id,
            recipient,
            _entry(status="accepted", wamid=wamid, event="adopted_from_status"),
        )
        return _row(record) if record is not None else None

    async def adopt_sent(self, wamid: str, command_id: str) -> Adoption:
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                f"SELECT {_ROW} FROM messages WHERE command_id = $1 FOR UPDATE", command_id
            )
            if record is None:
                return Adoption("none")
            row = _row(record)
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
                WHERE command_id = $1 RETURNING {_ROW}
                """,
                command_id,
                wamid,
                adopted,
                _entry(status="accepted", wamid=wamid, event="adopted_from_tagged_status"),
            )
            assert record is not None
            return Adoption("adopted" if adopted else "late", _row(record))

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
                _error_json(error),
                _entry(event="fallback_template", wamid=wamid, code=error.code),
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

    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float, backdate: float
    ) -> tuple[float, float]:
        # The number's next free slot, or now - backdate when later (idle time's tokens, at
        # most backdate's worth); `count` slots from there, 1/rate apart, on this clock.
        record = await self.pool.fetchrow(
            """
            INSERT INTO pacing AS p (phone_number_id, next_slot)
            VALUES ($1, extract(epoch FROM clock_timestamp())::float8 - $4::float8
                + $2::float8 / $3::float8)
            ON CONFLICT (phone_number_id) DO UPDATE SET next_slot =
                GREATEST(p.next_slot, extract(epoch FROM clock_timestamp())::float8 - $4::float8)
                + $2::float8 / $3::float8
            RETURNING next_slot - $2::float8 / $3::float8 AS start,
                extract(epoch FROM clock_timestamp())::float8 AS now
            """,
            phone_number_id,
            float(count),
            float(rate),
            float(backdate),
        )
        assert record is not None
        return float(record["start"]), float(record["now"])

    async def open_circuit(self, phone_number_id: str, reason: str) -> int | None:
        incident = await self.pool.fetchval(
            """
            INSERT INTO circuits AS c (phone_number_id, state, incident, reason)
            VALUES ($1, 'open', 1, $2)
            ON CONFLICT (phone_number_id) DO UPDATE SET state = 'open',
                incident = c.incident + 1, reason = $2, changed_at = now()
                WHERE c.state = 'closed'
            RETURNING incident
            """,
            phone_number_id,
            reason,
        )
        return int(incident) if incident is not None else None

    async def close_circuit(self, phone_number_id: str) -> bool:
        closed = await self.pool.fetchval(
            "UPDATE circuits SET state = 'closed', changed_at = now()"
            " WHERE phone_number_id = $1 AND state = 'open' RETURNING true",
            phone_number_id,
        )
        return bool(closed)

    async def open_circuits(self) -> list[str]:
        rows = await self.pool.fetch("SELECT phone_number_id FROM circuits WHERE state = 'open'")
        return [r["phone_number_id"] for r in rows]

    async def backoff_recipient(
        self, phone_number_id: str, recipient: str, unit: float, cap: float
    ) -> float:
        left = await self.pool.fetchval(
            """
            WITH strikes AS (
                SELECT CASE WHEN b.until > now() - make_interval(secs => $4) THEN b.strikes + 1
                       ELSE 1 END AS n
                FROM recipient_backoff b WHERE b.phone_number_id = $1 AND b.recipient = $2
            )
            INSERT INTO recipient_backoff AS b (phone_number_id, recipient, until, strikes)
            VALUES ($1, $2, now() + make_interval(secs => least($4, $3)), 1)
            ON CONFLICT (phone_number_id, recipient) DO UPDATE SET
                strikes = (SELECT n FROM strikes),
                until = now() + make_interval(secs =>
                    least($4, $3 * power(4, (SELECT n FROM strikes) - 1)))
            RETURNING extract(epoch FROM until - now())::float8
            """,
            phone_number_id,
            recipient,
            float(unit),
            float(cap),
        )
        return float(left)


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


def _status_reason(error: MetaError | None) -> str | None:
    if error is None:
        return "failed status webhook"
    return f"{error.code} {error.title or error.message or ''}".strip()


# --------------------------------------------------------------------------- fake


@dataclass
class _Row:
    message: NewMessage
    status: str = "pending"
    rank: int = PENDING_RANK
    wamid: str | None = None
    attempts: int = 0
    claimed_until: float = 0.0
    used_fallback: bool = False
    media_id: str | None = None
    reason: str | None = None
    error: MetaError | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> LogRow:
        m = self.message
        return LogRow(
            command_id=m.command_id,
            phone_number_id=m.phone_number_id,
            recipient=m.recipient,
            kind=m.kind,
            status=self.status,
            status_rank=self.rank,
            wamid=self.wamid,
            attempts=self.attempts,
            used_fallback=self.used_fallback,
            media_id=self.media_id,
            reason=self.reason,
            error=self.error,
            lease_left=self.claimed_until - time.monotonic() if self.rank == SENDING_RANK else 0.0,
        )


@dataclass
class FakeStore:
    """The same semantics in memory (unit tests)."""

    rows: dict[str, _Row] = field(default_factory=dict)
    outbox: list[Event] = field(default_factory=list)  # result events written with a row
    patient_claims: int = 0
    slots: dict[str, float] = field(default_factory=dict)
    circuits: dict[str, tuple[str, int]] = field(default_factory=dict)
    backoffs: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    superseded_wamids: dict[str, str] = field(default_factory=dict)

    async def claim(
        self, message: NewMessage, lease_seconds: float, *, patient: bool = False
    ) -> Claim:
        self.patient_claims += patient
        now = time.monotonic()
        row = self.rows.get(message.command_id)
        if row is None:
            row = self.rows[message.command_id] = _Row(message)
        elif not (
            row.rank == PENDING_RANK or (row.rank == SENDING_RANK and row.claimed_until < now)
        ):
            return Claim("done" if row.rank >= ACCEPTED_RANK else "busy", row.view())
        taken_over = row.rank == SENDING_RANK
        row.status, row.rank, row.attempts = "sending", SENDING_RANK, row.attempts + 1
        row.claimed_until = now + lease_seconds
        until, _ = self.backoffs.get((message.phone_number_id, message.recipient), (0.0, 0))
        return Claim(
            "claimed",
            attempts=row.attempts,
            used_fallback=row.used_fallback,
            media_id=row.media_id,
            backoff_left=max(0.0, until - now),
            taken_over=taken_over,
        )

    async def get(self, command_id: str) -> LogRow | None:
        row = self.rows.get(command_id)
        return row.view() if row else None

    async def save_media(self, command_id: str, media_id: str) -> None:
        self.rows[command_id].media_id = media_id

    async def use_fallback(self, command_id: str) -> None:
        self.rows[command_id].used_fallback = True

    async def accepted(
        self, command_id: str, wamid: str | None, result: Event | None = None
    ) -> None:
        row = self.rows[command_id]
        if row.rank < ACCEPTED_RANK:
            row.status, row.rank = "accepted", ACCEPTED_RANK
        row.wamid = row.wamid or wamid
        row.timeline.append({"status": "accepted"})
        if result is not None:
            self.outbox.append(result)

    async def release(self, command_id: str, reason: str, error: MetaError | None) -> None:
        row = self.rows[command_id]
        if row.rank == SENDING_RANK:
            row.status, row.rank, row.reason = "pending", PENDING_RANK, reason
            row.error = error or row.error

    async def interrupted(self, command_id: str, hold_seconds: float) -> None:
        row = self.rows[command_id]
        if row.rank == SENDING_RANK:
            row.claimed_until = time.monotonic() + hold_seconds

    async def failed(self, message: NewMessage, reason: str, error: MetaError | None) -> bool:
        row = self.rows.setdefault(message.command_id, _Row(message))
        if row.rank >= ACCEPTED_RANK:
            return False
        row.status, row.rank, row.reason, row.error = "failed", FAILED_RANK, reason, error
        return True

    async def apply_status(
        self, wamid: str, status: str, at: datetime, error: MetaError | None
    ) -> StatusChange | None:
        row = next((r for r in self.rows.values() if r.wamid == wamid), None)
        if row is None:
            return None
        old, rank = row.rank, RANKS[status]
        changed = old < rank
        if changed:
            row.status, row.rank = status, rank
            row.error = error or row.error
            if rank == FAILED_RANK:
                row.reason = _status_reason(error)
            row.timeline.append({"status": status})
        return StatusChange(row.view(), old, changed)

    async def adopt(self, wamid: str, phone_number_id: str, recipient: str) -> LogRow | None:
        found = [
            r
            for r in self.rows.values()
            if r.message.phone_number_id == phone_number_id
            and r.message.recipient == recipient
            and r.wamid is None
            and r.rank in (PENDING_RANK, SENDING_RANK)
            and r.attempts > 0
            and r.message.kind != "mark_read"
        ]
        if len(found) != 1:
            return None
        row = found[0]
        row.wamid, row.status, row.rank = wamid, "accepted", ACCEPTED_RANK
        return row.view()

    async def adopt_sent(self, wamid: str, command_id: str) -> Adoption:
        row = self.rows.get(command_id)
        if row is None or (row.wamid is None and ACCEPTED_RANK <= row.rank < FAILED_RANK):
            return Adoption("none")
        if row.wamid is not None:
            self.superseded_wamids.setdefault(wamid, command_id)
            return Adoption("duplicate", row.view())
        row.wamid = wamid
        if row.rank < ACCEPTED_RANK:
            row.status, row.rank = "accepted", ACCEPTED_RANK
            return Adoption("adopted", row.view())
        return Adoption("late", row.view())

    async def reopen_for_fallback(self, wamid: str, error: MetaError) -> tuple[str, bool] | None:
        reopened = False
        row = next((r for r in self.rows.values() if r.wamid == wamid), None)
        if row is not None and not row.used_fallback and row.rank in (ACCEPTED_RANK, SENT_RANK):
            command = orjson.loads(row.message.command_json)
            if isinstance(command.get("fallback_template"), dict):
                row.status, row.rank, row.wamid, row.error = "pending", PENDING_RANK, None, error
                row.used_fallback = reopened = True
                self.superseded_wamids[wamid] = row.message.command_id
        command_id = self.superseded_wamids.get(wamid)
        return (self.rows[command_id].message.command_json, reopened) if command_id else None

    async def superseded(self, wamid: str) -> bool:
        return wamid in self.superseded_wamids

    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float, backdate: float
    ) -> tuple[float, float]:
        now = time.time()
        start = max(self.slots.get(phone_number_id, 0.0), now - backdate)
        self.slots[phone_number_id] = start + count / rate
        return start, now

    async def open_circuit(self, phone_number_id: str, reason: str) -> int | None:
        state, incident = self.circuits.get(phone_number_id, ("closed", 0))
        if state == "open":
            return None
        self.circuits[phone_number_id] = ("open", incident + 1)
        return incident + 1

    async def close_circuit(self, phone_number_id: str) -> bool:
        state, incident = self.circuits.get(phone_number_id, ("closed", 0))
        self.circuits[phone_number_id] = ("closed", incident)
        return state == "open"

    async def open_circuits(self) -> list[str]:
        return [n for n, (state, _) in self.circuits.items() if state == "open"]

    async def backoff_recipient(
        self, phone_number_id: str, recipient: str, unit: float, cap: float
    ) -> float:
        now = time.monotonic()
        until, strikes = self.backoffs.get((phone_number_id, recipient), (0.0, 0))
        strikes = strikes + 1 if until > now - cap else 1
        delay = float(min(cap, unit * 4.0 ** (strikes - 1)))
        self.backoffs[(phone_number_id, recipient)] = (now + delay, strikes)
        return delay
