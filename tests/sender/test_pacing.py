"""Pacing: the shared token bucket (unit, over an in-memory store) and two replicas on one number
(real RabbitMQ, PostgreSQL and a sandbox process enforcing the rate)."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from sender.circuits import Circuit
from sender.pacing import NumberPacer, PairLimiter
from shared.events import SendMessage
from tests.helpers import wait_for
from tests.sender.conftest import NUMBER, Stack

ROOT = Path(__file__).resolve().parents[2]


class ClockStore:
    """The shared ``pacing`` row in memory, on a given clock (the "database's")."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.next_slot = 0.0
        self.reserved: list[int] = []

    async def reserve_slots(
        self, phone_number_id: str, count: int, rate: float, backdate: float
    ) -> tuple[float, float]:
        now = self.clock()
        start = max(self.next_slot, now - backdate)
        self.next_slot = start + count / rate
        self.reserved.append(count)
        return start, now


def bucket_least_tokens(times: list[float], rate: float, capacity: float) -> float:
    """Replay sorted send times through a full token bucket: the fewest tokens left after a
    send (below 0: that send did not conform)."""
    tokens, stamp, least = capacity, times[0], capacity
    for t in times:
        tokens = min(capacity, tokens + (t - stamp) * rate) - 1
        stamp = t
        least = min(least, tokens)
    return least


async def _use(
    pacer: NumberPacer, clock: Callable[[], float], out: list[tuple[float, float]]
) -> None:
    slot = await pacer.acquire()
    out.append((slot, clock()))


def _check_bucket(pacers: list[NumberPacer], uses: list[tuple[float, float]]) -> None:
    """What NumberPacer promises: slots 1/rate apart (all pacers together), each used at or
    after its time and at most ``late`` after it, so the sends conform to the bucket."""
    rate, late = pacers[0].rate, pacers[0].late
    slots = sorted(slot for slot, _ in uses)
    # Exactly 1/rate apart on the store's clock; on the pacers' clocks, give or take their
    # offset estimates (half a round trip to this in-memory store: microseconds).
    assert all(b - a >= 1 / rate - 1e-5 for a, b in itertools.pairwise(slots))
    for slot, used in uses:
        assert slot <= used
        assert used - slot <= late + 0.002  # the test's own task resumes after the pacer's check
    sends = sorted(used for _, used in uses)
    assert bucket_least_tokens(sends, rate, 1 + rate * (late + 0.002)) >= 0


# The unit tests give the pacers a generous burst (200 ms), so that this process being starved
# of CPU by a busy machine does not make them give slots up.


async def test_pacer_spaces_sends_at_the_rate() -> None:
    pacer = NumberPacer(ClockStore(), NUMBER, rate=200.0, batch_seconds=0.05, burst_seconds=0.2)
    uses: list[tuple[float, float]] = []
    await asyncio.gather(*(_use(pacer, time.monotonic, uses) for _ in range(100)))
    _check_bucket([pacer], uses)
    slots = sorted(slot for slot, _ in uses)
    # No slot is lost: 100 sends take 99 intervals of the database's clock.
    assert slots[-1] - slots[0] == pytest.approx(99 / 200)
    assert pacer.missed_slots == 0


async def test_two_pacers_share_one_store() -> None:
    store = ClockStore()
    a = NumberPacer(store, NUMBER, rate=100.0, burst_seconds=0.2)
    b = NumberPacer(store, NUMBER, rate=100.0, burst_seconds=0.2)
    uses: list[tuple[float, float]] = []
    await asyncio.gather(*(_use(p, time.monotonic, uses) for p in (a, b) for _ in range(50)))
    _check_bucket([a, b], uses)
    assert a.missed_slots == b.missed_slots == 0


async def test_a_late_wake_up_spends_the_slots_due_meanwhile() -> None:
    """A stall shorter than the burst loses nothing; a longer one gives up only the slots
    older than the bound, and the catch-up never exceeds the bucket's capacity."""
    skew = [0.0]

    def clock() -> float:
        return time.monotonic() + skew[0]

    rate = 100.0
    pacer = NumberPacer(ClockStore(clock), NUMBER, rate=rate, burst_seconds=0.1, clock=clock)
    uses: list[tuple[float, float]] = []
    tasks = [asyncio.ensure_future(_use(pacer, clock, uses)) for _ in range(60)]
    await wait_for(lambda: len(uses) >= 10, timeout=5, message="10 sends")
    skew[0] += 0.03  # the process stalls 30 ms (under the 100 ms bound): 3 slots come due
    await wait_for(lambda: len(uses) >= 30, timeout=5, message="30 sends")
    assert pacer.missed_slots == 0
    skew[0] += 0.4  # a 400 ms stall: the slots in hand are over 100 ms old, given up
    await asyncio.gather(*tasks)
    _check_bucket([pacer], uses)
    assert 0 < pacer.missed_slots <= 0.4 * rate - 0.1 * rate + 1
    burst = max(sum(1 for _, u in uses if t <= u < t + 1e-3) for _, t in uses)
    assert burst <= pacer.burst


async def test_a_cancelled_send_hands_its_slot_to_the_next() -> None:
    pacer = NumberPacer(ClockStore(), NUMBER, rate=5.0)
    first = asyncio.ensure_future(pacer.acquire())
    second = asyncio.ensure_future(pacer.acquire())
    await wait_for(lambda: first.done(), timeout=5, message="first slot")
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    third = await pacer.acquire()
    assert third - first.result() == pytest.approx(1 / 5)  # the cancelled one's slot
    await pacer.close()


async def test_a_reservation_dropped_before_its_slot_takes_none() -> None:
    pacer = NumberPacer(ClockStore(), NUMBER, rate=5.0)
    first = pacer.reserve()
    second = pacer.reserve()
    await first
    pacer.drop(second)  # not handed a slot yet: it leaves the queue
    assert second.cancelled()
    third = await pacer.acquire()
    assert third - first.result() == pytest.approx(1 / 5)
    await pacer.close()


async def test_a_reservation_dropped_with_its_slot_gives_it_to_the_next() -> None:
    pacer = NumberPacer(ClockStore(), NUMBER, rate=5.0, burst_seconds=1.0)
    first = pacer.reserve()
    slot = await first
    pacer.drop(first)  # the claim said "done": the send does not happen
    assert await pacer.acquire() == slot
    await pacer.close()


async def test_a_store_failure_reaches_the_waiting_sends() -> None:
    class Down:
        async def reserve_slots(
            self, phone_number_id: str, count: int, rate: float, backdate: float
        ) -> tuple[float, float]:
            raise ConnectionError("database down")

    pacer = NumberPacer(Down(), NUMBER, rate=50.0)
    with pytest.raises(ConnectionError):
        await pacer.acquire()


def test_pair_limiter_burst_then_interval() -> None:
    now = [0.0]
    pairs = PairLimiter(3, 6.0, clock=lambda: now[0])
    assert [pairs.take(NUMBER, "+1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pairs.take(NUMBER, "+1") == pytest.approx(6.0)
    assert pairs.take(NUMBER, "+2") == 0.0  # another recipient is not held up
    now[0] = 6.0
    assert pairs.take(NUMBER, "+1") == 0.0


def test_circuit_probes_one_at_a_time() -> None:
    now = [0.0]
    circuit = Circuit(10.0, clock=lambda: now[0])
    assert circuit.admit() == (False, 0.0)
    assert circuit.failed() is True
    probe, hold = circuit.admit()
    assert not probe and hold >= 5.0
    now[0] = 10.0
    assert circuit.admit() == (True, 0.0)
    assert circuit.admit()[0] is False  # one probe at a time
    assert circuit.worked() is True
    assert circuit.admit() == (False, 0.0)


RATE = 40


@pytest.fixture
async def sandbox_process() -> AsyncIterator[str]:
    """The sandbox in its own process: its record of times is not skewed by this event loop."""
    port = _free_port()
    env = {
        **os.environ,
        "SANDBOX_HOST": "127.0.0.1",
        "SANDBOX_PORT": str(port),
        "SANDBOX_RATE_PER_SECOND": str(RATE),
        "SANDBOX_ENFORCE_WINDOW": "false",
        "SANDBOX_WEBHOOK_URL": "http://127.0.0.1:9/none",
        "SANDBOX_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                try:
                    async with http.post(
                        f"{url}/_sandbox/faults", json={"drop_status_webhooks": True}
                    ) as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(up, timeout=30, message="the sandbox process")
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
async def test_two_replicas_never_exceed_the_numbers_rate(
    stack: Stack, sandbox_process: str
) -> None:
    assert stack.start_app is not None
    apps = [
        await stack.start_app(SENDER_RATE_PER_SECOND=RATE, META_GRAPH_URL=sandbox_process)
        for _ in range(2)
    ]
    total = 160
    commands = [
        SendMessage.model_validate(
            {"to": f"+5491150{i:06d}", "content": {"kind": "text", "body": f"n{i}"}}
        )
        for i in range(total)
    ]
    await stack.bus.publish_many(commands)
    for command in commands:
        await stack.sent(command, timeout=30)
    async with stack.http.get(f"{sandbox_process}/_sandbox/messages") as r:
        record = await r.json()
    times = sorted(m["time"] for m in record["messages"])
    assert len(times) == total
    # The rate's definition (sender/pacing.py), strictly, on the sandbox's own record: no send
    # was refused for throughput, and the accept times replayed through a full bucket of RATE
    # tokens refilled at RATE/s find a token every time (so no t-second interval holds more
    # than RATE + RATE * t sends, and the long-run mean never exceeds RATE).
    assert record["throttled"] == 0
    assert bucket_least_tokens(times, RATE, RATE) >= 0
    for app in apps:
        labels = {"phone_number_id": NUMBER}
        assert stack.metric(app, "whatsapp_send_retries_total", **labels, reason="130429") == 0
        assert stack.metric(app, "whatsapp_messages_accepted_total", **labels, kind="text") > 0
