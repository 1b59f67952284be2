"""Result events through the outbox: written in a batched INSERT, published by a relay.

The handlers' ``publish`` port writes the event to the schema's ``outbox`` table (one statement
for all the events written meanwhile) and returns: the command is acked once its result is
durable, without waiting for the broker's confirm. (A send's ``MessageSent`` is written by the
store, in the statement that records the acceptance; :func:`outbox_insert` is shared.) Relay
workers take unpublished rows with ``FOR UPDATE SKIP LOCKED`` (replicas share the work), publish
them concurrently (confirms pipelined), and mark them published. A crash before that only means
a row is published again later, with the same deterministic event id.

A written row wakes one worker, which waits ``gather_seconds`` before taking the rows: at
1,000 results/s that is one relay transaction for a dozen rows instead of one per row (each is
four statements). A worker that finds a full batch wakes the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from sender.batching import Batcher, HeldConnections
from shared.bus import Bus
from shared.db import Pool
from shared.events import Event

log = logging.getLogger("mensajero.sender.relay")


def outbox_insert(first: int) -> str:
    """INSERT of outbox rows from the five arrays of :func:`outbox_columns`, ``$first`` on."""
    a, b, c, d, e = (f"${i}" for i in range(first, first + 5))
    return (
        "INSERT INTO outbox (source_id, event_id, event_type, body, correlation_id)"
        f" SELECT * FROM unnest({a}::text[], {b}::text[], {c}::text[], {d}::bytea[], {e}::text[])"
        " ON CONFLICT (event_id) DO NOTHING"
    )


def outbox_columns(
    events: Sequence[Event],
) -> tuple[list[str], list[str], list[str], list[bytes], list[str | None]]:
    ids = [e.event_id for e in events]
    return (
        ids,
        ids,
        [e.type for e in events],
        [e.model_dump_json().encode() for e in events],
        [e.correlation_id for e in events],
    )


class OutboxRelay:
    def __init__(
        self,
        pool: Pool,
        bus: Bus,
        *,
        workers: int = 3,
        batch: int = 300,
        idle_seconds: float = 1.0,
        keep_seconds: float = 3600.0,
        gather_seconds: float = 0.01,
        held: HeldConnections | None = None,
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.batch = batch
        self.idle_seconds = idle_seconds
        self.keep_seconds = keep_seconds
        self.gather_seconds = gather_seconds
        self._own_held = held is None  # else the caller closes it (after stop())
        self._held = held or HeldConnections(pool)
        self._wakes = [asyncio.Event() for _ in range(workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self._inserts: Batcher[Event, None] = Batcher(self._insert)
        self._last_cleanup = time.monotonic()
        self.transactions = 0  # relay transactions that found rows (tests, diagnosis)

    async def publish(self, event: Event) -> None:
        """The handlers' port: durable once this returns, on the bus soon after."""
        await self._inserts.submit(event)

    async def _insert(self, events: list[Event]) -> Sequence[None]:
        columns = outbox_columns(events)
        await self._held.run(lambda conn: conn.execute(_INSERT, *columns))
        self.notify()
        return [None] * len(events)

    def notify(self) -> None:
        """Rows were written: wake a worker (the first; it wakes the others when behind)."""
        self._wakes[0].set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker(i)) for i in range(len(self._wakes))]

    async def stop(self) -> None:
        """Publish what is left (briefly), then stop the workers."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                while await self.publish_once() == self.batch:
                    pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_held:
            await self._held.close()

    async def _worker(self, index: int) -> None:
        wake = self._wakes[index]
        following = self._wakes[(index + 1) % len(self._wakes)]
        while True:
            if wake.is_set() and self.gather_seconds > 0:
                # Let the results of the next few ms join this transaction.
                await asyncio.sleep(self.gather_seconds)
            # Cleared before the rows are taken: a row written from here on wakes it again.
            wake.clear()
            try:
                published = await self.publish_once()
                await self._cleanup()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                published = 0
                await asyncio.sleep(self.idle_seconds)
            if published >= self.batch:
                following.set()  # behind: publish in parallel
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.idle_seconds)

    async def publish_once(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, event_id, event_type, body, correlation_id FROM outbox"
                " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch,
            )
            if not rows:
                return 0
            self.transactions += 1
            results = await asyncio.gather(
                *(
                    self.bus.publish_raw(
                        routing_key=row["event_type"],
                        body=bytes(row["body"]),
                        event_type=row["event_type"],
                        event_id=row["event_id"],
                        correlation_id=row["correlation_id"],
                    )
                    for row in rows
                ),
                return_exceptions=True,
            )
            done = [row["id"] for row, r in zip(rows, results, strict=True) if r is None]
            failures = [r for r in results if isinstance(r, BaseException)]
            if done:
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", done
                )
        if failures:
            log.error(
                "%d event(s) could not be published; will retry: %s", len(failures), failures[0]
            )
            await asyncio.sleep(self.idle_seconds)
        return len(rows)

    async def _cleanup(self) -> None:
        if time.monotonic() - self._last_cleanup < 60:
            return
        self._last_cleanup = time.monotonic()
        await self.pool.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            float(self.keep_seconds),
        )


_INSERT = outbox_insert(1)
