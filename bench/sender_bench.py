"""Sender throughput and latency against the sandbox, real RabbitMQ and PostgreSQL.

Starts `python -m sandbox` (rate 1,000/s enforced, window off, status webhooks dropped) and
`python -m sender` (rate 1,000/s) as subprocesses on 127.0.0.1, on a fresh bus prefix and schema.

1. Latency: with the sender idle, publish commands at 200/s (not rate-limited) and measure
   from publish to the sandbox accepting the Graph API call (each text carries its publish
   time; the sandbox records when it accepted it). The first 200 warm up and are not counted.
2. Backlog: stop the sender, publish N text commands, start it again and measure how fast the
   backlog drains (the sandbox's accept times), how many 130429 answers it met (the sender's
   retries and the sandbox's own count), the busiest sliding 1-second window and the least
   headroom left in the number's limit (the sandbox's accept times replayed through a token
   bucket of RATE tokens refilled at RATE/s: the definition of the rate, see sender/pacing.py),
   the sender's CPU time per message and its peak memory (VmHWM), and how busy the machine was
   (its CPUs are shared with RabbitMQ, PostgreSQL, the sandbox and whatever else runs).

    python -m bench.sender_bench [--messages 20000] [--latency-messages 1000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from sender.app import send_queue_spec, status_queue_spec
from sender.settings import Settings
from shared.bus import Bus, QueueSpec
from shared.events import ErrorReported, MessageFailed, MessageSent, SendMessage

ROOT = Path(__file__).resolve().parents[1]
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "bench-token"
NUMBER = "100000000000001"
RATE = 1000
RECIPIENTS = 2000
WARMUP = 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (all CPUs, from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / ticks, sum(values[:8]) / ticks


def busiest_window(times: list[float], seconds: float = 1.0) -> int:
    """The most sends in any window [t, t + seconds) of the sorted ``times``."""
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= seconds:
            first += 1
        best = max(best, last - first + 1)
    return best


def bucket_headroom(times: list[float], rate: float, capacity: float) -> float:
    """Replay sorted ``times`` through a full token bucket; the fewest tokens left after a send
    (negative: that send would have been refused)."""
    tokens, stamp, least = capacity, times[0] if times else 0.0, capacity
    for t in times:
        tokens = min(capacity, tokens + (t - stamp) * rate)
        stamp = t
        tokens -= 1
        least = min(least, tokens)
    return least


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _wait_http(session: aiohttp.ClientSession, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout} s")
        await asyncio.sleep(0.05)


class Bench:
    def __init__(self, messages: int, latency_messages: int, rate: float = RATE) -> None:
        self.rate = rate
        self.messages = messages
        self.latency_messages = latency_messages
        self.token = uuid.uuid4().hex[:8]
        self.prefix = f"bench.sender.{self.token}"
        self.schema = f"bench_sender_{self.token}"
        self.sandbox_port = _free_port()
        self.sender_port = _free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.sender_url = f"http://127.0.0.1:{self.sender_port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.latency_base = 0

    def _spawn(self, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def start_sandbox(self) -> None:
        self._spawn(
            "sandbox",
            {
                "SANDBOX_HOST": "127.0.0.1",
                "SANDBOX_PORT": str(self.sandbox_port),
                "META_WA_ACCESS_TOKEN": TOKEN,
                "META_WA_PHONE_NUMBER_ID": NUMBER,
                "SANDBOX_RATE_PER_SECOND": str(self.rate),
                "SANDBOX_ENFORCE_WINDOW": "false",
                "SANDBOX_WEBHOOK_URL": "http://127.0.0.1:9/none",
                "SANDBOX_LOG_LEVEL": "WARNING",
            },
        )

    def start_sender(self) -> subprocess.Popen[bytes]:
        return self._spawn(
            "sender",
            {
                "RABBITMQ_URL": RABBITMQ_URL,
                "DATABASE_URL": DATABASE_URL,
                "BUS_PREFIX": self.prefix,
                "DB_SCHEMA": self.schema,
                "DB_POOL_SIZE": "20",
                "META_WA_ACCESS_TOKEN": TOKEN,
                "META_WA_PHONE_NUMBER_ID": NUMBER,
                "META_GRAPH_URL": self.sandbox_url,
                "SENDER_RATE_PER_SECOND": str(self.rate),
                "SENDER_PORT": str(self.sender_port),
                "HTTP_HOST": "127.0.0.1",
                "LOG_LEVEL": "WARNING",
                "MENSAJERO_ENV": "bench",
            },
        )

    async def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 5)

    async def sandbox_records(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with session.get(f"{self.sandbox_url}/_sandbox/messages") as response:
            return list((await response.json())["messages"])

    async def sandbox_throttled(self, session: aiohttp.ClientSession) -> int:
        async with session.get(
            f"{self.sandbox_url}/_sandbox/messages", params={"after": "1000000000"}
        ) as response:
            return int((await response.json())["throttled"])

    async def sandbox_count(self, session: aiohttp.ClientSession, after: int) -> int:
        async with session.get(
            f"{self.sandbox_url}/_sandbox/messages", params={"after": str(after)}
        ) as response:
            return after + 1 + len((await response.json())["messages"])

    async def metric(self, session: aiohttp.ClientSession, name: str) -> float:
        async with session.get(f"{self.sender_url}/metrics") as response:
            text = await response.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def run(self) -> dict[str, float]:
        timeout = aiohttp.ClientTimeout(total=60)
        bus = Bus(RABBITMQ_URL, self.prefix)
        await bus.connect()
        settings = Settings(  # only for the queue specs
            META_WA_ACCESS_TOKEN=TOKEN, META_WA_PHONE_NUMBER_ID=NUMBER, BUS_PREFIX=self.prefix
        )
        sink = QueueSpec(
            "bench-sink",
            [MessageSent.TYPE, MessageFailed.TYPE, ErrorReported.TYPE],
            retry_tiers_ms=(1000,),
        )
        try:
            for spec in (send_queue_spec(settings), status_queue_spec(settings), sink):
                await bus.declare_service_queue(spec)
            self.start_sandbox()
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await _wait_http(session, f"{self.sandbox_url}/_sandbox/health", 30)
                async with session.post(
                    f"{self.sandbox_url}/_sandbox/faults", json={"drop_status_webhooks": True}
                ) as response:
                    assert response.status == 200
                figures = await self._latency(session, bus)
                figures.update(await self._backlog(session, bus))
            return figures
        finally:
            for process in self.processes:
                await self.stop(process)
            await bus.delete_topology(
                [send_queue_spec(settings), status_queue_spec(settings), sink]
            )
            await bus.close()
            conn = await asyncpg.connect(DATABASE_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            finally:
                await conn.close()

    async def _latency(self, session: aiohttp.ClientSession, bus: Bus) -> dict[str, float]:
        sender = self.start_sender()
        await _wait_http(session, f"{self.sender_url}/readyz", 60)
        pace = 1 / 200  # 200 commands/s: far below the rate, so nothing waits for a slot
        warmup = WARMUP  # connections opened, statements prepared: not measured
        started = time.monotonic()
        for i in range(warmup + self.latency_messages):
            due = started + i * pace
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            command = SendMessage.model_validate(
                {
                    "to": f"+5491170{i % RECIPIENTS:06d}",
                    "content": {"kind": "text", "body": f"lat {time.time():.6f}"},
                }
            )
            await bus.publish(command)
        deadline = time.monotonic() + 60
        while await self.sandbox_count(session, -1) < warmup + self.latency_messages:
            if time.monotonic() > deadline:
                raise RuntimeError("latency phase did not finish")
            await asyncio.sleep(0.1)
        records = await self.sandbox_records(session)
        self.latency_base = len(records)
        records = records[warmup:]
        latencies: list[float] = sorted(
            float(r["time"]) - float(r["body"]["text"]["body"].split()[1]) for r in records
        )
        await self.stop(sender)

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

        return {
            "latency_messages": float(len(latencies)),
            "publish_to_graph_p50_ms": pct(0.50),
            "publish_to_graph_p99_ms": pct(0.99),
            "publish_to_graph_max_ms": latencies[-1] * 1000,
        }

    async def _backlog(self, session: aiohttp.ClientSession, bus: Bus) -> dict[str, float]:
        base = self.latency_base
        commands = [
            SendMessage.model_validate(
                {
                    "to": f"+5491180{i % RECIPIENTS:06d}",
                    "content": {"kind": "text", "body": f"backlog {i}"},
                }
            )
            for i in range(self.messages)
        ]
        chunk = 500
        for start in range(0, len(commands), chunk):
            await bus.publish_many(commands[start : start + chunk], timeout=60)
        sender = self.start_sender()
        await _wait_http(session, f"{self.sender_url}/readyz", 60)
        cpu_start = _cpu_seconds(sender.pid)
        sandbox_pid = self.processes[0].pid
        sandbox_cpu_start = _cpu_seconds(sandbox_pid)
        machine_start = _machine_cpu()
        wall_start = time.monotonic()
        deadline = time.monotonic() + max(120.0, self.messages / self.rate * 4)
        seen = base - 1
        while seen < base + self.messages - 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"backlog not drained: {seen - base + 1} of {self.messages}")
            await asyncio.sleep(0.25)
            seen = await self.sandbox_count(session, seen) - 1
        wall = time.monotonic() - wall_start
        cpu = _cpu_seconds(sender.pid) - cpu_start
        sandbox_cpu = _cpu_seconds(sandbox_pid) - sandbox_cpu_start
        machine_end = _machine_cpu()
        busy, total = (e - s for e, s in zip(machine_end, machine_start, strict=True))
        peak = _peak_rss_mb(sender.pid)
        throttled = await self.metric(
            session, 'whatsapp_send_retries_total{phone_number_id="' + NUMBER + '",reason="130429"}'
        )
        sandbox_throttled = await self.sandbox_throttled(session)
        missed = await self.metric(session, "whatsapp_pacing_missed_slots_total")
        times = sorted(r["time"] for r in (await self.sandbox_records(session))[base:])
        span = times[-1] - times[0]
        # Whole seconds after the first (a fresh process opening its connections).
        per_second: dict[int, int] = {}
        for t in times:
            per_second[int(t - times[0])] = per_second.get(int(t - times[0]), 0) + 1
        full = [n for s, n in per_second.items() if 0 < s < int(span)]
        steady = [t for t in times if t >= times[0] + 1.0]
        steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
        await self.stop(sender)
        return {
            "backlog_messages": float(len(times)),
            "drain_rate_per_s": (len(times) - 1) / span if span > 0 else 0.0,
            "drain_rate_after_first_second_per_s": steady_rate,
            "drain_seconds": span,
            "busiest_1s_window": float(busiest_window(times)),
            "busiest_whole_second": float(max(full)) if full else 0.0,
            "quietest_whole_second": float(min(full)) if full else 0.0,
            "limit_bucket_least_tokens_left": bucket_headroom(times, self.rate, self.rate),
            "answers_130429": throttled,
            "sandbox_throttled_130429": float(sandbox_throttled),
            "pacing_slots_missed": missed,
            "sender_cpu_ms_per_message": cpu / len(times) * 1000,
            "sender_cpu_cores": cpu / wall,
            "sandbox_cpu_cores": sandbox_cpu / wall,
            "machine_cpu_busy_cores": busy / total * (os.cpu_count() or 1),
            "machine_cpus": float(os.cpu_count() or 1),
            "sender_peak_rss_mb": peak,
        }


async def run(
    messages: int = 20_000, latency_messages: int = 1_000, rate: float = RATE
) -> dict[str, float]:
    return await Bench(messages, latency_messages, rate).run()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sender_bench")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--latency-messages", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=RATE, help="the number's rate (per s)")
    args = parser.parse_args()
    figures = asyncio.run(run(args.messages, args.latency_messages, args.rate))
    for key, value in figures.items():
        print(f"  {key:<36} {value:,.2f}")


if __name__ == "__main__":
    main()
