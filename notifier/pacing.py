"""Pacing sends at the SES account's rate, and backoff for throttled ones."""

from __future__ import annotations

import asyncio
import random
import time


class Pacer:
    """Spaces calls at most ``rate`` per second (per process), in arrival order."""

    def __init__(self, rate_per_second: float) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.interval = 1.0 / rate_per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            if delay > 0:
                await asyncio.sleep(delay)
                now = time.monotonic()
            self._next = max(now, self._next) + self.interval

    def slow_down(self, seconds: float) -> None:
        """Push the next slot back (SES said we are going too fast)."""
        self._next = max(self._next, time.monotonic() + seconds)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with 'equal jitter': between half and all of ``base * 2**(n-1)``."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    r: float = (rng or random).random()
    return ceiling / 2 + r * ceiling / 2
