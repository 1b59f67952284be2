"""Gateway throughput and latency: signed webhooks, each confirmed by the broker before its 200.

Starts the gateway as its own process (``python -m gateway``, uvloop) on 127.0.0.1 against the
RabbitMQ at ``RABBITMQ_URL`` (default local), with a durable quorum queue bound to every event
like a consuming service's, then:

- single-update webhooks (3 statuses for 1 inbound message, Meta's sizing rule) from a closed
  loop of keep-alive connections for ``BENCH_SECONDS`` (default 10 s; at most
  ``BENCH_MAX_REQUESTS``): requests per second, p50 and p99 latency, and the gateway's CPU time
  per request (a figure other load on the machine inflates less than throughput);
- one webhook of 1,000 updates, answered: median and best of a few.

The load generator speaks raw HTTP/1.1 over asyncio streams (an HTTP client library would cost
more CPU than the server under test on a 2-core machine). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

SECRET = "bench-app-secret"
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP_SECONDS = 1.0
MAX_REQUESTS = int(os.environ.get("BENCH_MAX_REQUESTS", "200000"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
# The second configuration measured: GATEWAY_WORKERS processes sharing the port (one per core).
WORKERS = int(os.environ.get("BENCH_GATEWAY_WORKERS", str(os.cpu_count() or 1)))
BATCH_RUNS = 5
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "INFO")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux), 0 where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            parts = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _broker_pid() -> int | None:
    """RabbitMQ's process when it runs on this machine (Erlang's ``beam.smp``), else None."""
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() == "beam.smp":
                    return int(entry)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _envelope(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "419561257915477", "changes": [{"field": "messages", "value": value}]}],
    }


METADATA = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}


def _inbound(n: int) -> dict[str, Any]:
    return {
        "from": "5491135722871",
        "id": f"wamid.bench.in.{n}",
        "timestamp": "1750091045",
        "type": "text",
        "text": {"body": f"Hola {n}"},
    }


def _status(n: int) -> dict[str, Any]:
    return {
        "id": f"wamid.bench.out.{n // 3}",
        "status": ("sent", "delivered", "read")[n % 3],
        "timestamp": str(1750091100 + n),
        "recipient_id": "5491135722871",
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"},
    }


def _contacts() -> list[dict[str, Any]]:
    return [{"profile": {"name": "Usuario"}, "wa_id": "5491135722871"}]


def single_body(n: int) -> bytes:
    if n % 4 == 0:
        value = {
            "messaging_product": "whatsapp",
            "metadata": METADATA,
            "contacts": _contacts(),
            "messages": [_inbound(n)],
        }
    else:
        value = {"messaging_product": "whatsapp", "metadata": METADATA, "statuses": [_status(n)]}
    return json.dumps(_envelope(value), ensure_ascii=True).encode()


def batch_body(run: int) -> bytes:
    messages = [_inbound(run * 1000 + i) for i in range(250)]
    statuses = [_status(run * 1000 + i) for i in range(750)]
    value = {
        "messaging_product": "whatsapp",
        "metadata": METADATA,
        "contacts": _contacts(),
        "messages": messages,
        "statuses": statuses,
    }
    return json.dumps(_envelope(value), ensure_ascii=True).encode()


def request_bytes(body: bytes) -> bytes:
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        "POST /webhook/whatsapp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"X-Hub-Signature-256: sha256={signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _http_get_status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        return int(head[9:12])
    finally:
        writer.close()


async def _single_load(port: int, requests: list[bytes]) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    sent = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + WARMUP_SECONDS
    stop_at = measure_from + SECONDS
    measured = 0

    async def worker(offset: int) -> None:
        nonlocal errors, sent, measured
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        index = offset
        try:
            while sent < MAX_REQUESTS:
                now = loop.time()
                if now >= stop_at:
                    break
                request = requests[index % len(requests)]
                index += CONNECTIONS
                sent += 1
                began = time.perf_counter()
                status = await _exchange(reader, writer, request)
                took = time.perf_counter() - began
                if status != 200:
                    errors += 1
                if now >= measure_from:
                    latencies.append(took)
                    measured += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(CONNECTIONS)))
    elapsed = max(loop.time() - measure_from, 1e-9)
    latencies.sort()
    return {
        "single_sent": float(sent),
        "single_requests": float(measured),
        "single_errors": float(errors),
        "single_rps": measured / elapsed,
        "single_p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "single_p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
    }


async def _batch_load(port: int) -> dict[str, float]:
    times: list[float] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for run in range(BATCH_RUNS):
            request = request_bytes(batch_body(run))
            began = time.perf_counter()
            status = await _exchange(reader, writer, request)
            times.append(time.perf_counter() - began)
            if status != 200:
                raise RuntimeError(f"batch answered {status}")
    finally:
        writer.close()
    return {
        "batch_1000_median_ms": 1000 * statistics.median(times),
        "batch_1000_best_ms": 1000 * min(times),
    }


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def _tree_cpu(pid: int) -> float:
    """CPU time of a process and its live children (the gateway's supervisor and workers)."""
    return _cpu_seconds(pid) + sum(_cpu_seconds(child) for child in _children(pid))


def _listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:``port`` (Linux's /proc/net/tcp; state 0A is LISTEN)."""
    wanted = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
    except OSError:
        return 1
    return sum(1 for row in rows if row[1] == wanted and row[3] == "0A")


async def _ready(port: int) -> bool:
    with contextlib.suppress(OSError):
        return await _http_get_status(port, "/readyz") == 200
    return False


async def _start_gateway(
    env: dict[str, str], port: int, workers: int, module: str = "gateway"
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
        [sys.executable, "-m", module],
        env={**env, "GATEWAY_WORKERS": str(workers)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    # A worker binds the port only once started (broker connected), so connections never reach
    # one that is not ready; the measurement starts when all of them listen.
    while _listeners(port) < workers or await _ready(port) is False:
        if process.poll() is not None:
            raise RuntimeError(
                f"gateway exited: {process.stderr.read() if process.stderr else ''!r}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError("gateway not ready within 30 s")
        await asyncio.sleep(0.1)
    return process


async def _stop_gateway(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        await asyncio.wait_for(asyncio.to_thread(process.wait), 30)
    except TimeoutError:
        process.kill()


async def _measure_single(port: int, process: subprocess.Popen[bytes]) -> dict[str, float]:
    requests = [request_bytes(single_body(n)) for n in range(4000)]
    broker = _broker_pid()
    cpu_before = _tree_cpu(process.pid)
    broker_before = _cpu_seconds(broker) if broker else 0.0
    load_before = _cpu_seconds(os.getpid())
    results = await _single_load(port, requests)
    cpu = _tree_cpu(process.pid) - cpu_before
    # Where the rest of the 2 cores go: the broker (with other users' load, if any) and
    # this load generator.
    broker_cpu = _cpu_seconds(broker) - broker_before if broker else 0.0
    load_cpu = _cpu_seconds(os.getpid()) - load_before
    sent = results.pop("single_sent")
    # CPU the gateway spent per webhook (warm-up included): what capacity one core gives,
    # whatever else the machine is running.
    results["gateway_cpu_us_per_request"] = 1e6 * cpu / max(sent, 1.0)
    results["gateway_capacity_rps_one_core"] = 1e6 / max(results["gateway_cpu_us_per_request"], 1.0)
    if broker:
        results["broker_cpu_us_per_request"] = 1e6 * broker_cpu / max(sent, 1.0)
    results["loadgen_cpu_us_per_request"] = 1e6 * load_cpu / max(sent, 1.0)
    return results


@dataclass
class Sink:
    """A bench's own prefix on the broker: the topic exchange, a durable quorum queue bound to
    every event (the gateway confirms only what a queue stored), and the gateway's environment."""

    prefix: str
    channel: AbstractChannel
    queue: AbstractQueue
    env: dict[str, str]


@contextlib.asynccontextmanager
async def gateway_sink() -> AsyncIterator[Sink]:
    """The bench's prefix, removed afterwards with every queue a gateway declares on it."""
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(prefix, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(
            f"{prefix}.sink", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="#")
        env = {
            **os.environ,
            "META_WA_APP_SECRET": SECRET,
            "META_WA_VERIFY_TOKEN": "bench",
            "HTTP_HOST": "127.0.0.1",
            "BUS_PREFIX": prefix,
            "RABBITMQ_URL": RABBITMQ_URL,
        }
        try:
            yield Sink(prefix, channel, queue, env)
        finally:
            for name in ("sink", "gateway.unrouted", "gateway.feed"):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(f"{prefix}.{name}")
            for name in (prefix, f"{prefix}.dlx"):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(name)
    finally:
        await connection.close()


async def run() -> dict[str, float]:
    async with gateway_sink() as bench_sink:
        return await _run(bench_sink)


async def _run(bench_sink: Sink) -> dict[str, float]:
    prefix, channel, sink = bench_sink.prefix, bench_sink.channel, bench_sink.queue
    env = {**bench_sink.env, "LOG_LEVEL": LOG_LEVEL}
    results: dict[str, float] = {}
    published = 0
    # One process (GATEWAY_WORKERS=1, the default), then WORKERS processes on one port.
    for workers in sorted({1, WORKERS}):
        # Each configuration starts with an empty queue, as with a consumer keeping up (a
        # quorum queue holding the previous run's 40,000 events costs the broker more).
        purged = await sink.purge()
        published += purged.message_count or 0
        port = _free_port()
        env["GATEWAY_PORT"] = str(port)
        process = await _start_gateway(env, port, workers)
        try:
            measured = await _measure_single(port, process)
            suffix = "" if workers == 1 else f"_{workers}_workers"
            results.update({f"{key}{suffix}": value for key, value in measured.items()})
            if workers == WORKERS:
                results.update(await _batch_load(port))
        finally:
            await _stop_gateway(process)
    declared = await channel.declare_queue(f"{prefix}.sink", passive=True)
    left = declared.declaration_result.message_count or 0
    # Every event the gateway confirmed over the run, counted in the queue.
    results["events_in_queue"] = float(published + left)
    return results


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(run())
    print(
        f"gateway bench ({os.cpu_count()} cores, broker on this machine, {CONNECTIONS} connections)"
    )
    for name, number in results.items():
        print(f"  {name:<24} {number:>12.2f}")
    print("  targets: single_rps >= 4000 (either configuration), single_p99_ms < 50,")
    print("           batch_1000_median_ms < 250")


if __name__ == "__main__":
    main()
