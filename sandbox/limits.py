"""Token buckets for Meta's throughput (per business number) and pair (per recipient) limits."""

from __future__ import annotations


class TokenBucket:
    """`capacity` tokens, refilled at `rate` tokens per second; starts full."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class PairLimiter:
    """One bucket per recipient: a burst of `burst`, then one message every `interval` seconds."""

    def __init__(self, burst: int, interval: float) -> None:
        self.burst = burst
        self.interval = interval
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, recipient: str, now: float) -> bool:
        bucket = self._buckets.get(recipient)
        if bucket is None:
            bucket = self._buckets[recipient] = TokenBucket(1 / self.interval, self.burst, now)
        return bucket.take(now)

    def clear(self) -> None:
        self._buckets.clear()
