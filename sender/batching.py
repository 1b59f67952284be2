"""Group commit: calls made while a batch is running are sent together as the next batch.

No timer: a lone call runs at once (no added latency when idle); under load the calls that
pile up during one round trip share the next, so one statement serves many messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_size: int = 256,
        parallel: int = 2,
    ) -> None:
        self._run = run
        self._max_size = max_size
        self._parallel = parallel
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runners: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._runners) < self._parallel:
            task = asyncio.get_running_loop().create_task(self._drain())
            self._runners.add(task)
            task.add_done_callback(self._runners.discard)
        return await future

    async def _drain(self) -> None:
        while self._pending:
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
