"""Exactly-once effects over an at-least-once bus: the schema's inbox and outbox, and the relay.

:meth:`Outbox.handle_once` runs a handler's work in one PostgreSQL transaction that (1) records
the event id in the inbox, (2) changes the service's state and (3) writes the events the work
publishes into the outbox. After the commit the relay publishes those rows, together with the
rows of the other handlers that committed meanwhile (one relay transaction, confirms
pipelined), and only then does ``handle_once`` return, so the message is acked after its events
reached the broker and the events of one key (one customer) reach it in the order they were
handled. A redelivered event finds its id in the inbox, skips the work, and publishes whatever
its first run left unpublished (a crash between commit and publish). Published event ids are
deterministic, so a row published twice is deduplicated downstream.

Results written outside a handler's transaction (the sender's) go through :meth:`Outbox.publish`
(a group-committed INSERT: durable once it returns, no wait for the broker) or are written by
the caller's own statement, which then calls :meth:`Outbox.written`. Either wakes one of the
relay's workers, which lets the rows of the next ``gather_seconds`` join, then publishes every
unpublished row, oldest first, ``FOR UPDATE SKIP LOCKED`` (replicas share the work); a worker
that found a full batch wakes the next one. Asleep, the workers publish the rows left behind
(unpublished for ``stale_after`` seconds: a crash, or a broker that was away), whoever wrote
them. Published rows are deleted after ``RETENTION_DAYS`` (``shared.retention``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
from asyncpg import Record

from shared.batching import Batcher, HeldConnections
from shared.bus import Bus, RetryLater
from shared.db import Connection
from shared.events import Event
from shared.logs import fields
from shared.resources import Database

log = logging.getLogger("mensajero.outbox")

Work = Callable[[Connection], Awaitable[Sequence[Event]]]
# A work that meets a concurrent transaction runs again, this many times at most.
CONFLICT_RETRIES = 8
# PostgreSQL aborted one of two transactions that locked the same rows in opposite orders, or
# could not serialize them: rerunning the whole work is the cure.
TRANSIENT_CONFLICTS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)

_INBOX_INSERT = "INSERT INTO inbox (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true"
_COLUMNS = "id, source_id, event_id, event_type, body, correlation_id"


def outbox_insert(first: int) -> str:
    """INSERT of outbox rows from the five arrays of :func:`outbox_columns`, ``$first`` on."""
    a, b, c, d, e = (f"${i}" for i in range(first, first + 5))
    return (
        "INSERT INTO outbox (source_id, event_id, event_type, body, correlation_id)"
        f" SELECT * FROM unnest({a}::text[], {b}::text[], {c}::text[], {d}::bytea[], {e}::text[])"
        " ON CONFLICT (event_id) DO NOTHING"
    )


def outbox_columns(
    events: Sequence[Event], source_id: str | None = None
) -> tuple[list[str], list[str], list[str], list[bytes], list[str | None]]:
    """The arrays :func:`outbox_insert` takes; ``source_id`` None: each event is its own source."""
    ids = [e.event_id for e in events]
    return (
        ids if source_id is None else [source_id] * len(events),
        ids,
        [e.type for e in events],
        [e.model_dump_json().encode() for e in events],
        [e.correlation_id for e in events],
    )


_INSERT = outbox_insert(1)


async def add_to_outbox(conn: Connection, source_id: str, events: Sequence[Event]) -> None:
    """Write ``events`` into the outbox in the caller's transaction (published by the relay)."""
    if events:
        await conn.execute(_INSERT, *outbox_columns(events, source_id))


async def record_once(conn: Connection, event_id: str, work: Work) -> bool:
    """In the caller's transaction: record ``event_id`` in the inbox and, the first time, run
    ``work`` and write its events into the outbox. True when it ran now."""
    first_time = await conn.fetchval(_INBOX_INSERT, event_id)
    if first_time:
        await add_to_outbox(conn, event_id, await work(conn))
    return bool(first_time)


def _publish_row(bus: Bus, row: Record) -> Awaitable[None]:
    return bus.publish_raw(
        routing_key=row["event_type"],
        body=bytes(row["body"]),
        event_type=row["event_type"],
        event_id=row["event_id"],
        correlation_id=row["correlation_id"],
    )


@dataclass(frozen=True)
class _Published:
    rows: int
    failures: dict[str, BaseException]  # by source id: the first failure of its rows


class Outbox:
    """The schema's inbox and outbox, and the relay that publishes the outbox (a resource)."""

    def __init__(
        self,
        database: Database,
        bus: Bus,
        *,
        conflicts: tuple[type[Exception], ...] = (),
        workers: int = 1,
        batch: int = 300,
        gather_seconds: float = 0.01,
        idle_seconds: float = 1.0,
        stale_after: float = 5.0,
        held: HeldConnections | None = None,
    ) -> None:
        """``conflicts``: the service's own exceptions that mean "rerun the work" (a version
        conflict). ``workers``: relay workers publishing :meth:`publish`'s rows (more than one
        publishes in parallel when behind, in no order between batches). ``held``: connections
        shared with the caller's own group-committed statements (else the outbox keeps its own)."""
        self.database = database
        self.bus = bus
        self.conflicts = (*TRANSIENT_CONFLICTS, *conflicts)
        self.batch = batch
        self.gather_seconds = gather_seconds
        self.idle_seconds = idle_seconds
        self.stale_after = stale_after
        self._held = held
        self._own_held = held is None
        self._wakes = [asyncio.Event() for _ in range(workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self._inserts: Batcher[Event, None] = Batcher(self._insert)
        self._flushes: Batcher[str, BaseException | None] = Batcher(self._publish_sources)
        self.transactions = 0  # relay transactions that found rows (tests, diagnosis)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._held is None:
            self._held = HeldConnections(self.database.pool)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(i), name=f"outbox-relay-{i}")
            for i in range(len(self._wakes))
        ]

    async def close(self) -> None:
        """Publish what is left (briefly), then stop the workers."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                while (await self._publish_pending(older_than=0.0)).rows == self.batch:
                    pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._own_held and self._held is not None:
            await self._held.close()

    # ------------------------------------------------------------------ handlers

    async def handle_once(self, event_id: str, work: Work) -> bool:
        """Run ``work`` once per ``event_id`` and publish the events it returns (see the module).
        True if it ran now. A conflict (a deadlock, a serialization failure, or one of the
        service's ``conflicts``) runs it again, up to :data:`CONFLICT_RETRIES` times, then
        raises RetryLater; a publish the broker refused raises BusError (retried by the bus)."""
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                async with self.database.pool.acquire() as conn, conn.transaction():
                    ran = await record_once(conn, event_id, work)
            except self.conflicts as conflict:
                log.info(
                    "concurrent update, running again",
                    extra=fields(source_id=event_id, attempt=attempt, reason=str(conflict)),
                )
                continue
            await self.flush(event_id)
            return ran
        raise RetryLater(f"{event_id}: still conflicting after {CONFLICT_RETRIES} attempts", 1.0)

    async def flush(self, source_id: str) -> None:
        """Publish the unpublished rows ``source_id`` wrote, now."""
        failure = await self._flushes.submit(source_id)
        if failure is not None:
            raise failure

    async def _publish_sources(self, sources: list[str]) -> list[BaseException | None]:
        async with self.database.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM outbox WHERE source_id = ANY($1::text[])"
                " AND published_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED",
                list(dict.fromkeys(sources)),
            )
            published = await self._publish_rows(conn, rows)
        return [published.failures.get(source) for source in sources]

    # ------------------------------------------------------------------ results

    async def publish(self, event: Event) -> None:
        """Write ``event`` to the outbox (durable once this returns); the relay publishes it."""
        await self._inserts.submit(event)

    async def _insert(self, events: list[Event]) -> Sequence[None]:
        columns = outbox_columns(events)
        await self.held.run(lambda conn: conn.execute(_INSERT, *columns))
        self.written()
        return [None] * len(events)

    def written(self) -> None:
        """Rows were written: wake a worker (the first; it wakes the others when behind)."""
        self._wakes[0].set()

    @property
    def held(self) -> HeldConnections:
        if self._held is None:
            raise RuntimeError("the outbox is not started")
        return self._held

    async def publish_stale(self, older_than: float | None = None) -> int:
        """Publish rows left unpublished ``older_than`` seconds (default ``stale_after``)."""
        age = self.stale_after if older_than is None else older_than
        return (await self._publish_pending(age)).rows

    # ------------------------------------------------------------------ the relay

    async def _worker(self, index: int) -> None:
        wake = self._wakes[index]
        following = self._wakes[(index + 1) % len(self._wakes)]
        everything = False  # publish every pending row, not only those left behind
        while True:
            if wake.is_set():
                everything = True
                if self.gather_seconds > 0:
                    # Let the rows of the next few ms join this transaction.
                    await asyncio.sleep(self.gather_seconds)
            # Cleared before the rows are taken: a row written from here on wakes it again.
            wake.clear()
            try:
                published = await self._publish_pending(0.0 if everything else self.stale_after)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(self.idle_seconds)
                everything = True
                continue
            if published.rows >= self.batch:
                following.set()  # behind: publish in parallel
                continue
            # What could not be published is tried again at the next round.
            everything = bool(published.failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.idle_seconds)

    async def _publish_pending(self, older_than: float) -> _Published:
        async with self.database.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM outbox WHERE published_at IS NULL"
                " AND created_at <= now() - make_interval(secs => $2)"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch,
                float(older_than),
            )
            published = await self._publish_rows(conn, rows)
        if published.failures:
            await asyncio.sleep(self.idle_seconds)
        return published

    async def _publish_rows(self, conn: Connection, rows: Sequence[Record]) -> _Published:
        """Publish ``rows`` concurrently (in order on the channel) and mark those confirmed."""
        if not rows:
            return _Published(0, {})
        self.transactions += 1
        results = await asyncio.gather(
            *(_publish_row(self.bus, row) for row in rows), return_exceptions=True
        )
        done = [row["id"] for row, result in zip(rows, results, strict=True) if result is None]
        if done:
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", done
            )
        failures: dict[str, BaseException] = {}
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                failures.setdefault(row["source_id"], result)
        if failures:
            first = next(iter(failures.values()))
            log.error(
                "%d event(s) could not be published; will retry: %s", len(rows) - len(done), first
            )
        return _Published(len(rows), failures)
