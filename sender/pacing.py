"""Pacing: per-number send slots shared through the store, and per-recipient buckets.

A number's rate ``R`` (Meta's throughput limit) means one thing everywhere in Mensajero, the
sender and the sandbox alike: **the sends Meta accepts for the number conform to a token bucket
of capacity ``R`` refilled at ``R`` tokens per second** (it starts full; a send takes one token;
a send that finds no token is answered 130429). Equivalently, for every ``t``, no ``t``-second
interval holds more than ``R + R * t`` sends, so the long-run mean never exceeds ``R``.

The sender keeps to a stricter bucket of the same kind, shared by every replica through the
database: capacity ``1 + R * burst_seconds`` (see :class:`NumberPacer`), which leaves the rest of
Meta's bucket (0.95 s at the default 50 ms) for the network's and the server's
jitter between the sender's call and Meta's count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# How late a send may use its slot (seconds): the sender's burst. Wake-ups later than this give
# the slot up (the bucket was full: those tokens overflowed).
DEFAULT_BURST_SECONDS = 0.05


class SlotSource(Protocol):
    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float, backdate: float
    ) -> tuple[float, float]:
        """Reserve ``count`` consecutive slots ``1/rate`` apart; (first slot, store's now).

        The first slot is the number's next free slot, or ``now - backdate`` when that is later
        (tokens accumulated while the number was idle, at most ``backdate`` seconds' worth),
        both on the store's clock.
        """
        ...


class NumberPacer:
    """Send slots of one business number: a token bucket shared by every replica.

    Slots are points on the database's clock, ``1/rate`` apart and handed out once (the
    ``pacing`` row holds the next free one). Each replica reserves them in small batches (one
    UPDATE for up to ``rate * batch_seconds`` slots, sized by the sends waiting, and never more
    than about two batches ahead of the clock), converts them to its own monotonic clock with
    the offset of the fastest round trip seen (NTP-style), and hands each due slot to the
    longest-waiting send. A send is never made before its slot, and never more than
    ``late = max(burst_seconds, 1/rate)`` after it: a replica that wakes up late (a busy event
    loop) sends the slots that came due meanwhile at once, up to that bound, and gives up older
    ones (the bucket was full; counted as missed).

    So, for every interval of ``t`` seconds, the sends of all replicas together number at most
    ``1 + rate * (t + late)``: a token bucket of capacity ``1 + rate * late`` refilled at
    ``rate``/s (up to the clock conversion error, a fraction of a database round trip). The
    long-run rate is exactly ``rate`` while sends are waiting: slots are reserved only for
    waiting sends and a late wake-up does not lose them.
    """

    def __init__(
        self,
        store: SlotSource,
        phone_number_id: str,
        rate: float,
        *,
        batch_seconds: float = 0.05,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        on_missed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._on_missed = on_missed
        self.phone_number_id = phone_number_id
        self.rate = rate
        self.step = 1.0 / rate
        self.batch_max = max(1, int(rate * batch_seconds))
        # A slot may be used this late (and no later): at least one interval, so that a slow
        # rate does not give up a slot for a wake-up a few ms late.
        self.late = max(burst_seconds, self.step)
        # The most sends that may leave together: the capacity of the sender's bucket.
        self.burst = 1.0 + rate * self.late
        self._clock = clock
        self._slots: deque[float] = deque()  # reserved, not handed out, ascending
        self._waiters: deque[asyncio.Future[float]] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._reserving: asyncio.Task[None] | None = None
        self.missed_slots = 0  # slots given up (the bucket was full: woken too late)
        self._offset: float | None = None  # database clock minus local clock
        self._best_rtt = float("inf")

    async def acquire(self) -> float:
        """Wait for this send's slot; returns the slot's time (on this pacer's clock).

        Use the slot at once: :meth:`missed` tells whether it has become too late to use.
        """
        if not self._waiters:
            slot = self._take_due(self._clock())
            if slot is not None:
                return slot
        first = True
        while True:
            waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            if first:
                self._waiters.append(waiter)
            else:  # it has waited longest
                self._waiters.appendleft(waiter)
            first = False
            self._start_pump()
            try:
                slot = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._slots.appendleft(waiter.result())  # handed over, unused: the next's
                    self._start_pump()
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
            # This task may resume well after the slot was handed over (a busy event loop).
            if not self.missed(slot):
                return slot
            self._missed()

    def reserve(self) -> asyncio.Future[float]:
        """Like :meth:`acquire`, as a future the pump resolves (no task per send): for a send
        that has other work to do meanwhile. Check :meth:`missed` on the slot (and
        :meth:`acquire` again when it is); :meth:`drop` it when it is not used."""
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if not self._waiters:
            slot = self._take_due(self._clock())
            if slot is not None:
                waiter.set_result(slot)
                return waiter
        self._waiters.append(waiter)
        self._start_pump()
        return waiter

    def drop(self, reserved: asyncio.Future[float]) -> None:
        """A :meth:`reserve` not used after all: its slot, when it has one, goes to the next."""
        if not reserved.done():
            reserved.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(reserved)
        elif not reserved.cancelled() and reserved.exception() is None:
            self._slots.appendleft(reserved.result())
            self._start_pump()

    def queued_seconds(self) -> float:
        """About how long a send that asks now waits for its slot (the sends queued before it)."""
        return len(self._waiters) * self.step

    def missed(self, slot: float) -> bool:
        """Too late to use this slot now (see the class)."""
        return self._clock() - slot > self.late

    async def close(self) -> None:
        """Stop the background tasks (on shutdown); sends still waiting fail."""
        for task in (self._pump, self._reserving):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the sender is shutting down"))

    # -- handing out -----------------------------------------------------------------------

    def _take_due(self, now: float) -> float | None:
        """The oldest slot that is due and not too late, dropping older ones."""
        self._drop_stale(now)
        if self._slots and self._slots[0] <= now:
            return self._slots.popleft()
        return None

    def _drop_stale(self, now: float) -> None:
        while self._slots and now - self._slots[0] > self.late:
            self._slots.popleft()
            self._missed()

    def _start_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())

    async def _run_pump(self) -> None:
        """Hand due slots to waiting sends (oldest first), reserving ahead as they need."""
        while True:
            while self._waiters and self._waiters[0].done():
                self._waiters.popleft()  # cancelled
            if not self._waiters:
                return
            now = self._clock()
            self._drop_stale(now)
            while self._waiters and self._slots and self._slots[0] <= now:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(self._slots.popleft())
            if not self._waiters:
                return
            self._reserve_ahead()
            if self._slots:
                await asyncio.sleep(self._slots[0] - now)
            else:
                reserving = self._reserving
                assert reserving is not None
                try:
                    await asyncio.shield(reserving)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # the store failed: so do the waiting sends
                    while self._waiters:
                        waiter = self._waiters.popleft()
                        if not waiter.done():
                            waiter.set_exception(error)
                    return

    def _reserve_ahead(self) -> None:
        """Start a reservation when the waiting sends outnumber the slots in hand, keeping at
        most about two batches ahead (slots reserved far ahead would be lost to a stall)."""
        reserving = self._reserving
        if reserving is not None:
            if not reserving.done():
                return
            # A failed reservation while slots were still in hand: the next one tries again
            # (and the sends waiting get its error if it fails too).
            if not reserving.cancelled():
                reserving.exception()
            self._reserving = None
        need = len(self._waiters) - len(self._slots)
        if need <= 0 or len(self._slots) >= self.batch_max:
            return
        count = min(self.batch_max, need)
        self._reserving = asyncio.get_running_loop().create_task(self._reserve(count))

    def _missed(self) -> None:
        self.missed_slots += 1
        if self._on_missed is not None:
            self._on_missed()

    # -- reserving -------------------------------------------------------------------------

    async def _reserve(self, count: int) -> None:
        if self._offset is None:
            # The first round trips are slow (connections, prepared statements) and would
            # misplace the first slots: measure the clock offset on a few empty reservations.
            for _ in range(3):
                await self._reserve_counted(0)
        await self._reserve_counted(count)

    async def _reserve_counted(self, count: int) -> None:
        asked = self._clock()
        # Accumulated tokens are claimable back to half the lateness bound, so that they are
        # still usable once the answer is here (the other half covers the round trip).
        start, db_now = await self.store.reserve_slots(
            self.phone_number_id, count, self.rate, self.late / 2
        )
        answered = self._clock()
        # The database read its clock somewhere between asking and answering: the middle, with
        # an error of at most half the round trip. Keep the offset of the fastest round trip
        # seen (as NTP does), so that a slow answer does not shift this batch's slots.
        rtt = answered - asked
        self._best_rtt *= 1.02  # let a fresher sample win now and then (clock drift)
        if self._offset is None or rtt <= self._best_rtt:
            self._offset = db_now - (asked + answered) / 2
            self._best_rtt = rtt
        if count == 0:
            return
        base = start - self._offset
        if self._slots:
            # A new offset estimate must not bring this batch closer than one interval to the
            # previous one (on the database's clock it never is).
            base = max(base, self._slots[-1] + self.step)
        self._slots.extend(base + i * self.step for i in range(count))


class Pacers:
    """One :class:`NumberPacer` per business number (a resource: closing stops their tasks)."""

    def __init__(
        self,
        store: SlotSource,
        rate_for: Callable[[str], float],
        batch_seconds: float,
        on_missed: Callable[[str], None] | None = None,
        *,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
    ) -> None:
        self._on_missed = on_missed
        self._store = store
        self._rate_for = rate_for
        self._batch_seconds = batch_seconds
        self._burst_seconds = burst_seconds
        self._pacers: dict[str, NumberPacer] = {}

    def for_number(self, phone_number_id: str) -> NumberPacer:
        pacer = self._pacers.get(phone_number_id)
        if pacer is None:
            pacer = self._pacers[phone_number_id] = NumberPacer(
                self._store,
                phone_number_id,
                self._rate_for(phone_number_id),
                batch_seconds=self._batch_seconds,
                burst_seconds=self._burst_seconds,
                on_missed=self._missed_callback(phone_number_id),
            )
        return pacer

    async def start(self) -> None:
        return None  # pacers start on a number's first send

    async def close(self) -> None:
        for pacer in self._pacers.values():
            await pacer.close()

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
