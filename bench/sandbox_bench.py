"""Sandbox throughput: accepted text sends per second, and their latency.

Starts `python -m sandbox` as a subprocess on an ephemeral 127.0.0.1 port (rate limit raised,
the 24 h window off) posting its status webhooks to a sink in this process, then sends N text
messages from C concurrent keep-alive connections (a minimal HTTP/1.1 client, so that the
figures measure the sandbox rather than the client).

    python -m bench.sandbox_bench [--sends 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

TOKEN = "bench-token"
PHONE_NUMBER_ID = "100000000000001"
RECIPIENTS = 1000
REPO = str(Path(__file__).resolve().parent.parent)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Sink:
    """Where the sandbox posts its status webhooks; counts them and answers 200."""

    def __init__(self) -> None:
        self.posts = 0
        self.statuses = 0
        self.expected = 0
        self.all_in = asyncio.Event()

    def expect(self, statuses: int) -> None:
        self.posts = self.statuses = 0
        self.expected = statuses
        self.all_in.clear()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts += 1
        self.statuses += body.count(b'"status":')
        if self.statuses >= self.expected:
            self.all_in.set()
        return web.Response(text="ok")

    async def drained(self, timeout: float) -> float:
        """Seconds until every expected status arrived (or the timeout passed)."""
        started = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_in.wait(), timeout)
        return time.perf_counter() - started


async def _wait_healthy(session: aiohttp.ClientSession, base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with session.get(f"{base}/_sandbox/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sandbox did not start at {base}")
        await asyncio.sleep(0.05)


class _Connection:
    """A minimal HTTP/1.1 keep-alive client: the bench measures the sandbox, not a client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), TOKEN.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _send_all(port: int, sends: int, concurrency: int) -> tuple[list[float], int, float]:
    """`sends` text messages from `concurrency` keep-alive connections; latencies in seconds."""
    path = f"/v23.0/{PHONE_NUMBER_ID}/messages"
    connections = [await _Connection.open(port) for _ in range(concurrency)]
    latencies: list[float] = []
    accepted = 0
    counter = iter(range(sends))

    async def worker(connection: _Connection) -> None:
        nonlocal accepted
        for i in counter:
            body = (
                b'{"messaging_product":"whatsapp","recipient_type":"individual","to":"+54911%08d",'
                b'"type":"text","text":{"body":"Hola %d"}}' % (i % RECIPIENTS, i)
            )
            started = time.perf_counter()
            status, _ = await connection.post(path, body)
            latencies.append(time.perf_counter() - started)
            accepted += status == 200

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    return latencies, accepted, time.perf_counter() - started


async def run(sends: int = 20_000, concurrency: int = 64) -> dict[str, float]:
    sink = _Sink()
    sink_app = web.Application()
    sink_app.router.add_post("/webhook", sink.handle)
    sink_runner = web.AppRunner(sink_app, access_log=None)
    await sink_runner.setup()
    sink_site = web.TCPSite(sink_runner, "127.0.0.1", 0)
    await sink_site.start()
    sink_port = sink_runner.addresses[0][1]

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": REPO,
        "META_WA_ACCESS_TOKEN": TOKEN,
        "META_WA_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "SANDBOX_HOST": "127.0.0.1",
        "SANDBOX_PORT": str(port),
        "SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{sink_port}/webhook",
        "SANDBOX_RATE_PER_SECOND": "1000000",
        "SANDBOX_PAIR_BURST": "1000000",
        "SANDBOX_ENFORCE_WINDOW": "false",
        "SANDBOX_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_healthy(session, base, timeout=30)
            await _send_all(port, min(1000, sends), concurrency)  # warm-up
            async with session.post(f"{base}/_sandbox/reset") as response:
                response.raise_for_status()
            sink.expect(3 * sends)
            cpu_before = _cpu_seconds(process.pid)
            latencies, accepted, elapsed = await _send_all(port, sends, concurrency)
            drain = await sink.drained(timeout=30)
            cpu = _cpu_seconds(process.pid) - cpu_before
            async with session.get(f"{base}/_sandbox/messages?after={sends - 2}") as response:
                recorded = (await response.json())["messages"]
    finally:
        process.terminate()
        await process.wait()
        await sink_runner.cleanup()

    latencies.sort()
    return {
        "sends": float(sends),
        "concurrency": float(concurrency),
        "accepted": float(accepted),
        "recorded_by_sandbox": float(recorded[-1]["index"] + 1 if recorded else 0),
        "accepted_sends_per_second": accepted / elapsed,
        # The sandbox's own CPU per send (its status webhooks included): what one core sustains
        # however busy the rest of the machine is.
        "sandbox_cpu_us_per_send": cpu / accepted * 1e6 if cpu and accepted else 0.0,
        "sends_per_sandbox_cpu_second": accepted / cpu if cpu else 0.0,
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "latency_p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "status_webhooks_received": float(sink.statuses),
        "status_webhook_posts": float(sink.posts),
        "statuses_all_in_after_last_send_s": drain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    figures = asyncio.run(run(args.sends, args.concurrency))
    for key, value in figures.items():
        print(f"  {key:<36} {value:,.2f}")


if __name__ == "__main__":
    main()
