"""The notifier's state behind a port (:class:`Repository`) and its PostgreSQL adapter: the email
log, the suppression list and the error digests.

A repository works on one connection (``PgRepository(conn)``): inside the caller's transaction
when there is one (``Outbox.handle_once`` opens it for a handler's work), else statement by
statement. What is old goes through ``shared.retention`` (:data:`PRUNING`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from notifier.domain import Alert, DigestEntry, ErrorInfo
from notifier.mailer import Email
from shared.db import Connection

# The operators' mail, which ERROR_MAILS_PER_MINUTE caps.
OPERATOR_KINDS = ("error", "alert", "digest")
# Serialises the per-minute decision on operator mails across handlers and replicas.
CAP_LOCK = "notifier:error-mail-cap"
MAX_CORRELATION_IDS = 10
# After RETENTION_DAYS (shared.retention: $1 days, $2 batch size): finished emails (an email
# still to send is kept) and closed digests (with their occurrences).
PRUNING = (
    "DELETE FROM emails WHERE ctid = ANY(ARRAY(SELECT ctid FROM emails"
    " WHERE status IN ('sent', 'suppressed', 'failed')"
    " AND created_at < now() - $1 * interval '1 day' LIMIT $2))",
    "DELETE FROM error_digests WHERE ctid = ANY(ARRAY(SELECT ctid FROM error_digests"
    " WHERE status = 'closed' AND closed_at < now() - $1 * interval '1 day' LIMIT $2))",
)


@dataclass(frozen=True)
class StoredEmail:
    key: str
    kind: str
    email: Email
    status: str
    attempts: int
    correlation_id: str | None


class Claim:
    """Outcome of trying to claim an email for sending."""

    CLAIMED = "claimed"
    BUSY = "busy"  # another delivery holds it (within its lease)
    DONE = "done"  # sent or suppressed already
    MISSING = "missing"


@dataclass(frozen=True)
class Folded:
    digest_id: int
    opened: bool  # this occurrence opened a new window (the first of its kind)


class Repository(Protocol):
    # ------------------------------------------------------------------ the email log
    async def add_email(
        self, *, key: str, kind: str, email: Email, now: datetime, correlation_id: str | None = None
    ) -> bool:
        """Record an email to send; False when one with this key exists already."""

    async def claim_email(
        self, key: str, *, now: datetime, lease: float
    ) -> tuple[str, StoredEmail | None]:
        """Take an email for sending: pending, failed (a replay), or a lease that ran out."""

    async def mark_sent(self, key: str, *, message_id: str, now: datetime) -> None: ...

    async def mark_status(
        self,
        key: str,
        status: str,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None: ...

    async def mark_delivered(self, ses_message_id: str, *, at: datetime) -> bool:
        """Record SES's delivery of a mail we sent; False when the message id is not ours."""

    async def email_status(self, key: str) -> str | None: ...

    # ------------------------------------------------------------------ suppression
    async def suppress(
        self, addresses: list[str], *, reason: str, detail: str | None, source_event_id: str
    ) -> list[str]:
        """Add addresses to the suppression list; returns those new to it."""

    async def suppressed_among(self, addresses: tuple[str, ...]) -> dict[str, str]:
        """The suppressed ones among ``addresses`` (as given), with their reason."""

    # ------------------------------------------------------------------ digests
    async def fold_error(self, info: ErrorInfo, *, now: datetime, window: float) -> Folded:
        """Add an occurrence to its fingerprint's open digest (one is opened when none is)."""

    async def mark_reported(self, digest_id: int) -> None: ...

    async def error_mail_capacity(self, *, now: datetime, per_minute: int) -> int:
        """How many operator mails may still go out in the minute before ``now`` (locks)."""

    async def due_digests(self, *, now: datetime, limit: int = 200) -> list[DigestEntry]:
        """Open digests whose window has ended, locked for this transaction, with counts."""

    async def count_occurrences(self, fingerprint: str) -> int:
        """Occurrences in the fingerprint's open window (0 when none is open)."""

    async def close_digests(
        self, entries: list[DigestEntry], *, now: datetime, mail_key: str | None
    ) -> None: ...


def _stored(row: Any) -> StoredEmail:
    return StoredEmail(
        key=row["key"],
        kind=row["kind"],
        email=Email(
            sender=row["sender"],
            to=tuple(row["recipients"]),
            subject=row["subject"],
            text=row["body_text"],
            html=row["body_html"],
            reply_to=tuple(row["reply_to"]),
        ),
        status=row["status"],
        attempts=row["attempts"],
        correlation_id=row["correlation_id"],
    )


def _entry(row: Any, stat: Any) -> DigestEntry:
    return DigestEntry(
        digest_id=row["id"],
        fingerprint=row["fingerprint"],
        service=row["service"],
        error_type=row["error_type"],
        message=row["message"],
        meta_code=row["meta_code"],
        phone_number_id=row["phone_number_id"],
        occurrences=int(stat["n"]) if stat else 0,
        reported=row["reported"],
        first_at=stat["first_at"] if stat else row["opened_at"],
        last_at=stat["last_at"] if stat else row["opened_at"],
        correlation_ids=tuple(stat["correlation_ids"] or ()) if stat else (),
        alert=Alert.from_json(json.loads(row["alert"])) if row["alert"] else None,
    )


class PgRepository:
    """:class:`Repository` on a PostgreSQL connection (the notifier's schema)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # ------------------------------------------------------------------ the email log

    async def add_email(
        self, *, key: str, kind: str, email: Email, now: datetime, correlation_id: str | None = None
    ) -> bool:
        inserted = await self.conn.fetchval(
            "INSERT INTO emails (key, kind, sender, recipients, reply_to, subject, body_text,"
            " body_html, correlation_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (key) DO NOTHING RETURNING true",
            key,
            kind,
            email.sender,
            list(email.to),
            list(email.reply_to),
            email.subject,
            email.text,
            email.html,
            correlation_id,
            now,
        )
        return bool(inserted)

    async def claim_email(
        self, key: str, *, now: datetime, lease: float
    ) -> tuple[str, StoredEmail | None]:
        row = await self.conn.fetchrow(
            "UPDATE emails SET status = 'sending', claimed_at = $2, attempts = attempts + 1"
            " WHERE key = $1 AND (status IN ('pending', 'failed')"
            "   OR (status = 'sending' AND claimed_at < $3))"
            " RETURNING *",
            key,
            now,
            now - timedelta(seconds=lease),
        )
        if row is not None:
            return Claim.CLAIMED, _stored(row)
        status = await self.email_status(key)
        if status is None:
            return Claim.MISSING, None
        return (Claim.BUSY if status == "sending" else Claim.DONE), None

    async def mark_sent(self, key: str, *, message_id: str, now: datetime) -> None:
        await self.conn.execute(
            "UPDATE emails SET status = 'sent', sent_at = $2, ses_message_id = $3,"
            " error_type = NULL, error_message = NULL WHERE key = $1",
            key,
            now,
            message_id,
        )

    async def mark_status(
        self,
        key: str,
        status: str,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        await self.conn.execute(
            "UPDATE emails SET status = $2, error_type = $3, error_message = $4 WHERE key = $1",
            key,
            status,
            error_type,
            error_message,
        )

    async def mark_delivered(self, ses_message_id: str, *, at: datetime) -> bool:
        updated = await self.conn.fetchval(
            "UPDATE emails SET delivered_at = coalesce(delivered_at, $2)"
            " WHERE ses_message_id = $1 RETURNING true",
            ses_message_id,
            at,
        )
        return bool(updated)

    async def email_status(self, key: str) -> str | None:
        status: str | None = await self.conn.fetchval(
            "SELECT status FROM emails WHERE key = $1", key
        )
        return status

    # ------------------------------------------------------------------ suppression

    async def suppress(
        self, addresses: list[str], *, reason: str, detail: str | None, source_event_id: str
    ) -> list[str]:
        added: list[str] = []
        for address in addresses:
            normalized = address.strip().lower()
            if not normalized:
                continue
            inserted = await self.conn.fetchval(
                "INSERT INTO suppressed_addresses (address, reason, detail, source_event_id)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (address) DO NOTHING RETURNING true",
                normalized,
                reason,
                detail,
                source_event_id,
            )
            if inserted:
                added.append(normalized)
        return added

    async def suppressed_among(self, addresses: tuple[str, ...]) -> dict[str, str]:
        wanted = {address.strip().lower(): address for address in addresses}
        rows = await self.conn.fetch(
            "SELECT address, reason FROM suppressed_addresses WHERE address = ANY($1::text[])",
            list(wanted),
        )
        return {wanted[row["address"]]: row["reason"] for row in rows}

    # ------------------------------------------------------------------ digests

    async def fold_error(self, info: ErrorInfo, *, now: datetime, window: float) -> Folded:
        """Run inside a transaction: the window stays FOR SHARE-locked until commit, so the
        flusher cannot close it with this occurrence uncounted."""
        for _ in range(5):
            opened = True
            digest_id = await self.conn.fetchval(
                "INSERT INTO error_digests (fingerprint, service, error_type, message, meta_code,"
                " phone_number_id, opened_at, due_at, alert)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)"
                " ON CONFLICT (fingerprint) WHERE status = 'open' DO NOTHING RETURNING id",
                info.fingerprint,
                info.service,
                info.error_type,
                info.message,
                info.meta_code,
                info.phone_number_id,
                now,
                now + timedelta(seconds=window),
                json.dumps(info.alert.to_json()) if info.alert else None,
            )
            if digest_id is None:
                opened = False
                digest_id = await self.conn.fetchval(
                    "SELECT id FROM error_digests WHERE fingerprint = $1 AND status = 'open'"
                    " FOR SHARE",
                    info.fingerprint,
                )
                if digest_id is None:  # closed in between: open the next window
                    continue
            await self.conn.execute(
                "INSERT INTO error_occurrences (event_id, digest_id, occurred_at, correlation_id)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
                info.event_id,
                digest_id,
                info.occurred_at,
                info.correlation_id,
            )
            return Folded(digest_id=int(digest_id), opened=opened)
        raise RuntimeError(f"could not find or open a digest for {info.fingerprint}")

    async def mark_reported(self, digest_id: int) -> None:
        await self.conn.execute(
            "UPDATE error_digests SET reported = reported + 1 WHERE id = $1", digest_id
        )

    async def error_mail_capacity(self, *, now: datetime, per_minute: int) -> int:
        """Takes a transaction-scoped lock: the caller decides and records its mails before
        another transaction counts."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", CAP_LOCK)
        used = await self.conn.fetchval(
            "SELECT count(*) FROM emails WHERE kind = ANY($1::text[]) AND created_at > $2",
            list(OPERATOR_KINDS),
            now - timedelta(seconds=60),
        )
        return per_minute - int(used or 0)

    async def due_digests(self, *, now: datetime, limit: int = 200) -> list[DigestEntry]:
        """``FOR UPDATE`` waits for handlers still adding occurrences (they hold ``FOR SHARE``),
        so every occurrence is either counted here or lands in the next window."""
        windows = await self.conn.fetch(
            "SELECT * FROM error_digests WHERE status = 'open' AND due_at <= $1"
            " ORDER BY opened_at, id LIMIT $2 FOR UPDATE",
            now,
            limit,
        )
        if not windows:
            return []
        stats = {
            row["digest_id"]: row
            for row in await self.conn.fetch(
                "SELECT digest_id, count(*) AS n, min(occurred_at) AS first_at,"
                " max(occurred_at) AS last_at,"
                " (array_agg(DISTINCT correlation_id)"
                "   FILTER (WHERE correlation_id IS NOT NULL))[1:$2] AS correlation_ids"
                " FROM error_occurrences WHERE digest_id = ANY($1::bigint[]) GROUP BY digest_id",
                [row["id"] for row in windows],
                MAX_CORRELATION_IDS,
            )
        }
        return [_entry(row, stats.get(row["id"])) for row in windows]

    async def count_occurrences(self, fingerprint: str) -> int:
        n = await self.conn.fetchval(
            "SELECT count(*) FROM error_occurrences o JOIN error_digests d ON d.id = o.digest_id"
            " WHERE d.fingerprint = $1 AND d.status = 'open'",
            fingerprint,
        )
        return int(n or 0)

    async def close_digests(
        self, entries: list[DigestEntry], *, now: datetime, mail_key: str | None
    ) -> None:
        await self.conn.executemany(
            "UPDATE error_digests SET status = 'closed', closed_at = $2, mail_key = $3,"
            " occurrences = $4 WHERE id = $1",
            [(entry.digest_id, now, mail_key, entry.occurrences) for entry in entries],
        )
