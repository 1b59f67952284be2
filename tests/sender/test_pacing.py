"""Pacing: slot reservation (unit, over the fake store) and two replicas on one number (real)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sender.pacing import Circuit, NumberPacer, PairLimiter
from sender.store import FakeStore
from shared.events import SendMessage
from tests.helpers import wait_for
from tests.sender.conftest import NUMBER, Stack

ROOT = Path(__file__).resolve().parents[2]


async def test_pacer_spaces_sends_at_the_rate() -> None:
    pacer = NumberPacer(FakeStore(), NUMBER, rate=200.0, batch_seconds=0.05)
    started = time.monotonic()
    times: list[float] = []

    async def one() -> None:
        await pacer.acquire()
        times.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(100)))
    elapsed = max(times) - started
    assert elapsed >= 99 / 200 * 0.97  # never faster than the rate
    assert elapsed < 99 / 200 + 0.3


async def test_two_pacers_share_one_store() -> None:
    store = FakeStore()
    a = NumberPacer(store, NUMBER, rate=100.0)
    b = NumberPacer(store, NUMBER, rate=100.0)
    started = time.monotonic()
    await asyncio.gather(*(p.acquire() for p in (a, b) for _ in range(50)))
    assert time.monotonic() - started >= 99 / 100 * 0.97


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
    assert circuit.token_failed() is True
    probe, hold = circuit.admit()
    assert not probe and hold >= 5.0
    now[0] = 10.0
    assert circuit.admit() == (True, 0.0)
    assert circuit.admit()[0] is False  # one probe at a time
    assert circuit.token_worked() is True
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
        times = sorted(m["time"] for m in (await r.json())["messages"])
    assert len(times) == total
    # The sandbox's own record of when it accepted each send: in any one second at most RATE,
    # give or take the window's edge and a few ms of loop and network jitter (+5%: 2 sends);
    # the long-run mean within 1%, leaving out the first few sends (connection set-up).
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    mean = (len(times) - 11) / (times[-1] - times[10])
    assert busiest <= RATE * 1.05, busiest
    assert mean <= RATE * 1.01, mean
    for app in apps:
        labels = {"phone_number_id": NUMBER}
        assert stack.metric(app, "whatsapp_send_retries_total", **labels, reason="130429") == 0
        assert stack.metric(app, "whatsapp_messages_accepted_total", **labels, kind="text") > 0
