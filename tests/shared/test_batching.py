"""Group commit (Batcher): who shares a statement."""

from __future__ import annotations

import asyncio

from shared.batching import Batcher


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()
        self.answer = asyncio.Event()  # the database answers
        self.answer.set()

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.started.set()
        await self.answer.wait()
        return [i * 10 for i in items]


async def test_the_calls_made_during_a_statement_share_the_next() -> None:
    recorder = Recorder()
    recorder.answer.clear()
    batcher = Batcher(recorder.run, parallel=1)
    first = asyncio.ensure_future(batcher.submit(0))
    await recorder.started.wait()  # a lone call runs at once
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 5)]
    recorder.answer.set()
    assert await asyncio.gather(first, *rest) == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0], [1, 2, 3, 4]]


async def test_a_delayed_batcher_gathers_the_calls_made_meanwhile() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run, parallel=1, delay=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1, 2, 3, 4]]
    # Later calls start a new runner: none is left waiting.
    assert await asyncio.wait_for(batcher.submit(7), 5) == 70


async def test_a_failed_batch_fails_its_callers_only() -> None:
    started, answer = asyncio.Event(), asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        started.set()
        await answer.wait()
        if 0 in items:
            raise ValueError("boom")
        return items

    batcher = Batcher(run, parallel=1)
    first = asyncio.ensure_future(batcher.submit(0))
    await started.wait()
    second = asyncio.ensure_future(batcher.submit(1))
    answer.set()
    done = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(done[0], ValueError) and done[1] == 1
