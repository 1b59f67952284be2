"""Pacing: per-number send slots shared through the store, per-recipient buckets, circuits."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

LATE_TOLERANCE = 0.02


class SlotSource(Protocol):
    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float
    ) -> tuple[float, float]: ...


class NumberPacer:
    """Send slots for one business number, never faster than ``rate`` across every replica.

    Slots are reserved from the shared store in batches (one UPDATE for up to
    ``rate * batch_seconds`` slots, sized by how many sends are waiting), on the database's
    clock: the store answers the first slot and its own "now", so the slot times are converted
    to this process's monotonic clock without trusting the replicas' wall clocks to agree.
    A slot not used in its time is dropped, never used late (that would be a burst).
    """

    def __init__(
        self,
        store: SlotSource,
        phone_number_id: str,
        rate: float,
        *,
        batch_seconds: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        on_missed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._on_missed = on_missed
        self.phone_number_id = phone_number_id
        self.rate = rate
        self.batch_max = max(1, int(rate * batch_seconds))
        self._clock = clock
        self._slots: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._waiting = 0
        self.missed_slots = 0  # slots given up (woken too late to use them)
        self._offset: float | None = None  # database clock minus local clock
        self._best_rtt = float("inf")
        # A slot this late is dropped: one interval, but at least what an event loop's wake-up
        # jitter is (a few ms), or at high rates most slots would be dropped and re-reserved.
        self._late = max(1.0 / rate, LATE_TOLERANCE)

    async def acquire(self) -> float:
        """Wait for this send's slot; returns the slot's time (on this pacer's clock)."""
        while True:
            slot = await self._next_slot()
            delay = slot - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            # Woken late (a busy event loop): several late sends would leave as a burst, so a
            # slot missed by more than one interval is given up for a fresh one.
            if not self.missed(slot):
                return slot
            self._missed()

    def missed(self, slot: float) -> bool:
        """Too late to use this slot now (see :meth:`acquire`)."""
        return self._clock() - slot > self._late

    async def _next_slot(self) -> float:
        self._waiting += 1
        try:
            slot = self._take()
            while slot is None:
                async with self._lock:
                    slot = self._take()
                    if slot is None:
                        await self._reserve()
                        slot = self._take()
            return slot
        finally:
            self._waiting -= 1

    def _take(self) -> float | None:
        now = self._clock()
        while self._slots:
            slot = self._slots.popleft()
            if slot >= now - self._late:
                return slot
            self._missed()
        return None

    def _missed(self) -> None:
        self.missed_slots += 1
        if self._on_missed is not None:
            self._on_missed()

    async def _reserve(self) -> None:
        if self._offset is None:
            # The first round trips are slow (connections, prepared statements) and would
            # misplace the first slots: measure the clock offset on a few empty reservations.
            for _ in range(3):
                await self._reserve_counted(0)
        await self._reserve_counted(min(self.batch_max, max(1, self._waiting)))

    async def _reserve_counted(self, count: int) -> None:
        asked = self._clock()
        start, db_now = await self.store.reserve_slots(self.phone_number_id, count, self.rate)
        answered = self._clock()
        # The database read its clock somewhere between asking and answering: the middle, with
        # an error of at most half the round trip. Keep the offset of the fastest round trip
        # seen (as NTP does), so that a slow answer does not shift this batch's slots.
        rtt = answered - asked
        self._best_rtt *= 1.02  # let a fresher sample win now and then (clock drift)
        if self._offset is None or rtt <= self._best_rtt:
            self._offset = db_now - (asked + answered) / 2
            self._best_rtt = rtt
        base = start - self._offset
        step = 1.0 / self.rate
        self._slots.extend(base + i * step for i in range(count))


class Pacers:
    """One :class:`NumberPacer` per business number."""

    def __init__(
        self,
        store: SlotSource,
        rate_for: Callable[[str], float],
        batch_seconds: float,
        on_missed: Callable[[str], None] | None = None,
    ) -> None:
        self._on_missed = on_missed
        self._store = store
        self._rate_for = rate_for
        self._batch_seconds = batch_seconds
        self._pacers: dict[str, NumberPacer] = {}

    def for_number(self, phone_number_id: str) -> NumberPacer:
        pacer = self._pacers.get(phone_number_id)
        if pacer is None:
            pacer = self._pacers[phone_number_id] = NumberPacer(
                self._store,
                phone_number_id,
                self._rate_for(phone_number_id),
                batch_seconds=self._batch_seconds,
                on_missed=self._missed_callback(phone_number_id),
            )
        return pacer

    def _missed_callback(self, phone_number_id: str) -> Callable[[], None] | None:
        report = self._on_missed
        if report is None:
            return None
        return lambda: report(phone_number_id)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class PairLimiter:
    """Meta's pair limit per (number, recipient): a burst, then one message per interval.

    Kept per replica (a 131056 answer is shared through the store's recipient backoff).
    """

    def __init__(
        self, burst: int, interval: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = float(burst)
        self.rate = 1.0 / interval
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def take(self, phone_number_id: str, recipient: str) -> float:
        """Take a token: 0 when there was one, else how long until there is (nothing taken)."""
        now = self._clock()
        key = (phone_number_id, recipient)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 50_000:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def give_back(self, phone_number_id: str, recipient: str) -> None:
        """Return a token taken for a send that did not happen."""
        bucket = self._buckets.get((phone_number_id, recipient))
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + 1)

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.stamp) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


CircuitState = Literal["closed", "open", "probing"]


@dataclass
class Circuit:
    """A number's token circuit: closed (send), open (hold), probing (one send tries)."""

    probe_seconds: float
    clock: Callable[[], float] = time.monotonic
    state: CircuitState = "closed"
    next_probe_at: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def admit(self) -> tuple[bool, float]:
        """(is_probe, 0) to send now; (False, seconds) to hold the message that long."""
        if self.state == "closed":
            return False, 0.0
        now = self.clock()
        if self.state == "open" and now >= self.next_probe_at:
            self.state = "probing"
            return True, 0.0
        wait = max(self.next_probe_at - now, 0.0) if self.state == "open" else self.probe_seconds
        # Spread the held messages over the interval so they do not all come back at once.
        return False, max(wait, self.probe_seconds * (0.5 + self.rng.random() / 2))

    def token_failed(self) -> bool:
        """Open (again); True when this closed circuit just opened."""
        was_closed = self.state == "closed"
        self.state = "open"
        self.next_probe_at = self.clock() + self.probe_seconds
        return was_closed

    def token_worked(self) -> bool:
        """Close; True when it was not closed."""
        was_open = self.state != "closed"
        self.state = "closed"
        return was_open

    def probe_abandoned(self) -> None:
        """The probe never reached Meta: let the next message probe."""
        if self.state == "probing":
            self.state = "open"
            self.next_probe_at = self.clock()

    @property
    def value(self) -> float:
        return {"closed": 0.0, "open": 1.0, "probing": 2.0}[self.state]


class Circuits:
    def __init__(self, probe_seconds: float, *, clock: Callable[[], float] = time.monotonic):
        self.probe_seconds = probe_seconds
        self._clock = clock
        self._circuits: dict[str, Circuit] = {}

    def for_number(self, phone_number_id: str) -> Circuit:
        circuit = self._circuits.get(phone_number_id)
        if circuit is None:
            circuit = self._circuits[phone_number_id] = Circuit(self.probe_seconds, self._clock)
        return circuit

    def items(self) -> list[tuple[str, Circuit]]:
        return list(self._circuits.items())
