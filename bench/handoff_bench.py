"""Handoff scaled out: throughput with 1 replica and with 2, and latency at a load 1 sustains.

N customers write at once through the gateway's topic (``whatsapp.message.received`` published
as the gateway does, with the ``x-mensajero-key`` header); ``python -m handoff`` replicas
(separate processes, on a fresh bus prefix and schema per round, ``HANDOFF_PARTITIONS`` 4,
the built-in menu bot) answer each with a ``SendMessage``, observed on the bus. The time of one
message is from its publish to its send command leaving handoff's outbox (its arrival here).

- throughput: every customer's messages published at once (after a warm-up message each, which
  opens their conversations), divided by the time until the last send command arrived;
- latency: an open-loop load at half the 1-replica throughput (one it sustains), p50 and p99,
  with 1 replica and with 2.

The machine's cores are shared with RabbitMQ, PostgreSQL, this process and other work: the 2/1
ratio is what a second replica adds *here*, not on its own node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg

from handoff.handlers import TABLE
from shared.bus import Bus, Consumer, Delivery, QueueSpec
from shared.db import drop_schema
from shared.events import Event, Identity, InboundMessage, SendMessage, stable_id
from shared.partitions import partition_owners

ROOT = Path(__file__).resolve().parent.parent
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PARTITIONS = 4
CUSTOMERS = int(os.environ.get("HANDOFF_BENCH_CUSTOMERS", "200"))
MESSAGES = int(os.environ.get("HANDOFF_BENCH_MESSAGES", "10"))
LATENCY_SECONDS = 6.0
NUMBER = "100000000000001"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _message(customer: int, n: int, run: str) -> InboundMessage:
    phone = f"+54911{customer:08d}"
    wamid = f"wamid.bench.{run}.{customer}.{n}"
    return InboundMessage(
        event_id=stable_id("bench", wamid),
        phone_number_id=NUMBER,
        wamid=wamid,
        timestamp=datetime.now(UTC),
        message_type="text",
        sender=Identity(phone=phone, wa_id=phone[1:], name="Cliente"),
        text=f"hola {n}",
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (all CPUs, /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - values[3] - values[4]) / ticks, sum(values) / ticks


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Round:
    """Handoff replicas on a fresh prefix and schema, and what they send, by inbound event."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.run = uuid.uuid4().hex[:8]
        self.prefix = f"bench.{self.run}"
        self.schema = f"bench_{self.run}"
        # A shared broker under other load confirms 2,000 publishes at once slowly.
        self.bus = Bus(RABBITMQ_URL, self.prefix, publish_timeout=60.0)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.answered: dict[str, float] = {}
        self.probe: Consumer | None = None
        # During the burst: the replicas' CPU seconds per message, the machine's busy share.
        self.cpu_ms_per_message = 0.0
        self.machine_busy = 0.0

    async def _on_send(self, event: Event, delivery: Delivery) -> None:
        if isinstance(event, SendMessage) and event.correlation_id:
            self.answered.setdefault(event.correlation_id, time.monotonic())

    async def start(self) -> None:
        await self.bus.connect()
        probe = QueueSpec("bench-probe", [SendMessage.TYPE], retry_tiers_ms=())
        self.probe = await self.bus.consume(probe, self._on_send, concurrency=200)
        for _ in range(self.replicas):
            port = _free_port()
            self.ports.append(port)
            env = {
                "RABBITMQ_URL": RABBITMQ_URL,
                "DATABASE_URL": DATABASE_URL,
                "BUS_PREFIX": self.prefix,
                "DB_SCHEMA": self.schema,
                "AGENT_WHATSAPP_NUMBER": "+5491100000000",
                "HANDOFF_PORT": str(port),
                "HTTP_HOST": "127.0.0.1",
                "HANDOFF_PARTITIONS": str(PARTITIONS),
                "HANDOFF_PARTITION_BALANCE_SECONDS": "0.5",
                "LOG_LEVEL": "WARNING",
                "MENSAJERO_ENV": "bench",
            }
            self.processes.append(
                subprocess.Popen(  # noqa: ASYNC220 - started before any load
                    [sys.executable, "-m", "handoff"],
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        await self._wait_balanced()

    async def _wait_balanced(self, timeout: float = 60.0) -> None:
        """Every replica ready and holding its share of the partitions."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            for port in self.ports:
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
                            if answer.status == 200:
                                break
                    if time.monotonic() > deadline:
                        raise RuntimeError("handoff did not become ready")
                    await asyncio.sleep(0.1)
        conn = await asyncpg.connect(DATABASE_URL)
        try:
            while True:
                owners = await partition_owners(conn, self.schema, "handoff")
                if len(owners) == PARTITIONS and len(set(owners.values())) == self.replicas:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"partitions not shared out: {owners}")
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    async def send(self, messages: list[InboundMessage]) -> dict[str, float]:
        """Publish ``messages`` at once (each customer's in order); when each was published."""
        sent: dict[str, float] = {}

        async def one(msg: InboundMessage) -> None:
            sent[msg.event_id] = time.monotonic()
            await self.bus.publish(msg)

        await asyncio.gather(*(one(msg) for msg in messages))
        return sent

    async def wait_answered(self, ids: list[str], timeout: float = 120.0) -> float:
        """When the last of ``ids`` was answered."""
        deadline = time.monotonic() + timeout
        while not all(event_id in self.answered for event_id in ids):
            if time.monotonic() > deadline:
                missing = sum(event_id not in self.answered for event_id in ids)
                raise RuntimeError(f"{missing} of {len(ids)} messages got no send command")
            await asyncio.sleep(0.01)
        return max(self.answered[event_id] for event_id in ids)

    async def throughput(self) -> float:
        warm = [_message(c, 0, self.run) for c in range(CUSTOMERS)]
        await self.send(warm)
        await self.wait_answered([m.event_id for m in warm])
        burst = [_message(c, n, self.run) for n in range(1, MESSAGES + 1) for c in range(CUSTOMERS)]
        cpu = sum(_cpu_seconds(p.pid) for p in self.processes)
        busy, total = _machine_busy()
        started = time.monotonic()
        for wave in range(MESSAGES):  # every customer's next message at once
            await self.send(burst[wave * CUSTOMERS : (wave + 1) * CUSTOMERS])
        finished = await self.wait_answered([m.event_id for m in burst])
        used = sum(_cpu_seconds(p.pid) for p in self.processes) - cpu
        busy_after, total_after = _machine_busy()
        self.cpu_ms_per_message = used * 1000 / len(burst)
        self.machine_busy = (busy_after - busy) / max(total_after - total, 1e-9)
        return len(burst) / (finished - started)

    async def latency(self, rate: float) -> tuple[float, float]:
        """p50 and p99 (ms) at ``rate`` messages per second, open loop, customers in turn."""
        total = int(rate * LATENCY_SECONDS)
        started = time.monotonic()
        published: dict[str, float] = {}
        for index in range(total):
            due = started + index / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            msg = _message(index % CUSTOMERS, 1000 + index // CUSTOMERS, self.run)
            published.update(await self.send([msg]))
        await self.wait_answered(list(published))
        times = [(self.answered[i] - at) * 1000 for i, at in published.items()]
        return _percentile(times, 0.5), _percentile(times, 0.99)

    async def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.probe is not None:  # before its queue goes, or the broker cancels it (a warning)
            await self.probe.stop(grace=1.0)
        with contextlib.suppress(Exception):
            feed = QueueSpec("handoff.feed", [], retry_tiers_ms=())
            await self.bus.delete_topology([TABLE.spec(partitions=PARTITIONS), feed])
        await self.bus.close()
        await drop_schema(DATABASE_URL, self.schema)


async def _measure(replicas: int, rate: float | None) -> tuple[float, float, float, Round]:
    bench = Round(replicas)
    try:
        await bench.start()
        throughput = await bench.throughput()
        p50, p99 = await bench.latency(rate or throughput / 2)
    finally:
        await bench.stop()
    return throughput, p50, p99, bench


async def run() -> dict[str, float]:
    one, p50_one, p99_one, first = await _measure(1, None)
    rate = one / 2
    two, p50_two, p99_two, second = await _measure(2, rate)
    return {
        "customers x messages": float(CUSTOMERS * MESSAGES),
        "throughput, 1 replica (msg/s)": one,
        "throughput, 2 replicas (msg/s)": two,
        "ratio 2/1": two / one,
        "latency load (msg/s, half of 1 replica's)": rate,
        "latency p50, 1 replica (ms)": p50_one,
        "latency p99, 1 replica (ms)": p99_one,
        "latency p50, 2 replicas (ms)": p50_two,
        "latency p99, 2 replicas (ms)": p99_two,
        "handoff cpu per message, 1 replica (ms)": first.cpu_ms_per_message,
        "handoff cpu per message, 2 replicas (ms)": second.cpu_ms_per_message,
        "machine cpu busy in the burst, 1 replica (%)": first.machine_busy * 100,
        "machine cpu busy in the burst, 2 replicas (%)": second.machine_busy * 100,
        "cpus on this machine (shared with the broker and db)": float(os.cpu_count() or 0),
    }


if __name__ == "__main__":
    for key, value in asyncio.run(run()).items():
        print(f"{key:<56} {value:,.2f}")
