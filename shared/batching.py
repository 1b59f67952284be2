"""Group commit: calls made while a batch is running are sent together as the next batch.

No timer by default: a lone call runs at once (no added latency when idle); under load the
calls that pile up during one round trip share the next, so one statement serves many messages.
With ``delay``, a batch waits that long for company first (for calls that are in no hurry).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

import asyncpg

from shared.db import Pool

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    PoolConnection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

T = TypeVar("T")
R = TypeVar("R")

# A connection that is gone (closed, ended by the server, or taken back by the pool): worth a
# try on another one. Errors of the statement itself are not retried.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
)
CONNECTION_TRIES = 3


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_size: int = 256,
        parallel: int = 2,
        delay: float = 0.0,
    ) -> None:
        self._run = run
        self._delay = delay
        self._max_size = max_size
        self._parallel = parallel
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runners: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._runners) < self._parallel:
            self._runners.add(asyncio.get_running_loop().create_task(self._drain()))
        return await future

    async def _drain(self) -> None:
        task = asyncio.current_task()
        try:
            while True:
                if self._delay > 0:
                    await asyncio.sleep(self._delay)
                if not self._pending:
                    return
                batch = self._pending[: self._max_size]
                del self._pending[: self._max_size]
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as error:  # every caller of the batch sees it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            # In the same step as the last look at _pending: a call made after it finds no
            # runner and starts one (a done callback would come a step later, leaving a gap).
            if task is not None:
                self._runners.discard(task)


class HeldConnections:
    """Connections kept out of the pool for the group-commit statements.

    asyncpg resets a pooled connection at every release (``RESET ALL``, ``UNLISTEN *``, ...: one
    more round trip, as costly as the statement itself). The batched statements leave no session
    state behind, so their connections are taken from the pool once and reused; one that fails
    (or is cancelled) goes back to the pool, which resets or replaces it.
    """

    def __init__(self, pool: Pool | Callable[[], Pool], *, keep: int = 3) -> None:
        # A pool, or where to find it once the database is started (built at bootstrap).
        self._pool = pool
        # At most this many are kept between statements (the rest of the pool serves the other
        # work: statuses, retries, the relay); more at once are borrowed and given back.
        self.keep = keep
        self._free: list[PoolConnection] = []
        self._closed = False

    @property
    def pool(self) -> Pool:
        return self._pool if isinstance(self._pool, asyncpg.Pool) else self._pool()

    async def start(self) -> None:
        return None  # connections are taken from the pool on first use

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[PoolConnection]:
        conn = self._free.pop() if self._free else await self.pool.acquire()
        try:
            yield conn
        except BaseException:
            await self._give_back(conn)
            raise
        if self._closed or len(self._free) >= self.keep:
            await self.pool.release(conn)
        else:
            self._free.append(conn)

    async def run(self, statement: Callable[[PoolConnection], Awaitable[T]]) -> T:
        """``statement`` on a kept connection; again on fresh ones when the connection turns out
        to be gone (the server restarted, or ended it): a kept connection learns of that only
        when it is used. ``statement`` must be safe to run twice (an answer can be lost after
        the commit): the batched statements are (ON CONFLICT, guarded UPDATEs)."""
        for attempt in range(1, CONNECTION_TRIES + 1):
            try:
                async with self.connection() as conn:
                    return await statement(conn)
            except CONNECTION_LOST:
                if attempt == CONNECTION_TRIES:
                    raise
        raise AssertionError("unreachable")

    async def _give_back(self, conn: PoolConnection) -> None:
        # The pool resets it, or replaces it when it is closed; a connection the pool already
        # took back (it saw the server end it) needs nothing more.
        with contextlib.suppress(*CONNECTION_LOST):
            await self.pool.release(conn)

    async def close(self) -> None:
        """Give the connections back (before the pool closes: it waits for them)."""
        self._closed = True
        while self._free:
            await self.pool.release(self._free.pop())
