"""Durable timers: due at a moment, fired once across replicas, with their effect, via the inbox.

A timer is a row of the schema's ``timers`` table (every schema has one, see ``shared.db``): a
subject (a case code, a draft id...), a kind, and when it is due; one per subject and kind, so
scheduling it again moves it. Every replica polls for the due ones (:func:`fire_due`, from a
background loop); each fires through :meth:`Outbox.handle_once` under an event id derived from
the timer and its due time, in one transaction that marks it fired, applies its effect and
writes the events the effect publishes. A replica that comes second finds the id in the inbox
(or the timer moved or gone) and does nothing; a timer that came due while no replica ran fires
at the next poll; an effect that reschedules its own timer (the same subject and kind) leaves it
pending for the new time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.db import Connection, Pool
from shared.events import Event, stable_id
from shared.outbox import Outbox


@dataclass(frozen=True)
class Timer:
    id: int
    subject: str
    kind: str
    due_at: datetime

    @property
    def source_id(self) -> str:
        """The event id it fires under: one per timer and due time."""
        return stable_id("timer", str(self.id), self.due_at.isoformat())


# The effect of a fired timer, in its transaction: the events it publishes.
Effect = Callable[[Connection, Timer], Awaitable[Sequence[Event]]]


async def schedule(conn: Connection, subject: str, kind: str, due_at: datetime) -> None:
    """``subject``'s ``kind`` timer is due at ``due_at`` (moved there when it exists)."""
    await conn.execute(
        "INSERT INTO timers (subject, kind, due_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (subject, kind) DO UPDATE SET due_at = EXCLUDED.due_at, fired_at = NULL",
        subject,
        kind,
        due_at,
    )


async def cancel(conn: Connection, subject: str) -> None:
    """Every timer of ``subject`` is gone."""
    await conn.execute("DELETE FROM timers WHERE subject = $1", subject)


async def due(pool: Pool, now: datetime, limit: int = 100) -> list[Timer]:
    rows = await pool.fetch(
        "SELECT id, subject, kind, due_at FROM timers WHERE fired_at IS NULL AND due_at <= $1"
        " ORDER BY due_at LIMIT $2",
        now,
        limit,
    )
    return [Timer(r["id"], r["subject"], r["kind"], r["due_at"]) for r in rows]


async def fire_due(outbox: Outbox, now: datetime, effect: Effect) -> list[Timer]:
    """Fire every timer due at ``now`` (see the module); the ones that fired here."""
    fired: list[Timer] = []
    for timer in await due(outbox.database.pool, now):
        if await fire_once(outbox, timer, now, effect):
            fired.append(timer)
    return fired


async def fire_once(outbox: Outbox, timer: Timer, now: datetime, effect: Effect) -> bool:
    """Fire ``timer`` unless it fired (or moved, or went) meanwhile; True when it fired here."""
    taken = False

    async def work(conn: Connection) -> Sequence[Event]:
        nonlocal taken
        taken = bool(
            await conn.fetchval(
                "UPDATE timers SET fired_at = $3 WHERE id = $1 AND due_at = $2"
                " AND fired_at IS NULL RETURNING true",
                timer.id,
                timer.due_at,
                now,
            )
        )
        return await effect(conn, timer) if taken else ()

    ran = await outbox.handle_once(timer.source_id, work)
    return ran and taken
