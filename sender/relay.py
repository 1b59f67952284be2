"""Result events through the outbox: written in a batched INSERT, published by a relay.

The handlers' ``publish`` port writes the event to the schema's ``outbox`` table (one statement
for all the events written meanwhile) and returns: the command is acked once its result is
durable, without waiting for the broker's confirm. Relay workers take unpublished rows with
``FOR UPDATE SKIP LOCKED`` (replicas share the work), publish them concurrently (confirms
pipelined), and mark them published. A crash before that only means a row is published again
later, with the same deterministic event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from sender.batching import Batcher
from shared.bus import Bus
from shared.db import Pool
from shared.events import Event

log = logging.getLogger("mensajero.sender.relay")


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
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.batch = batch
        self.idle_seconds = idle_seconds
        self.keep_seconds = keep_seconds
        self._wakes = [asyncio.Event() for _ in range(workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self._inserts: Batcher[Event, None] = Batcher(self._insert)
        self._last_cleanup = time.monotonic()

    async def publish(self, event: Event) -> None:
        """The handlers' port: durable once this returns, on the bus soon after."""
        await self._inserts.submit(event)

    async def _insert(self, events: list[Event]) -> Sequence[None]:
        await self.pool.execute(
            "INSERT INTO outbox (source_id, event_id, event_type, body, correlation_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])"
            " ON CONFLICT (event_id) DO NOTHING",
            [e.event_id for e in events],
            [e.event_id for e in events],
            [e.type for e in events],
            [e.model_dump_json().encode() for e in events],
            [e.correlation_id for e in events],
        )
        self.notify()
        return [None] * len(events)

    def notify(self) -> None:
        for wake in self._wakes:
            wake.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker(wake)) for wake in self._wakes]

    async def stop(self) -> None:
        """Publish what is left (briefly), then stop the workers."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                while await self.publish_once() == self.batch:
                    pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self, wake: asyncio.Event) -> None:
        while True:
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
            if published < self.batch:
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
