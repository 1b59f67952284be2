"""GATEWAY_WORKERS: several gateway processes on one port, supervised, with summed metrics.

Each test runs ``python -m gateway`` as a real process tree against the real RabbitMQ.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.mmap_dict import MmapedDict

from gateway.workers import RESTART_LIMIT
from shared.bus import Bus
from shared.events import InboundMessage
from tests.gateway.conftest import Collector
from tests.gateway.payloads import SECRET, VERIFY_TOKEN, dumps, message, sign, value, webhook
from tests.helpers import wait_for

WORKERS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:``port`` (Linux's /proc/net/tcp; state 0A is LISTEN)."""
    wanted = f"0100007F:{port:04X}"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1] == wanted and row[3] == "0A")


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a dead parent's successor) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _accepted_by_pid(metrics_dir: Path) -> dict[int, float]:
    """Accepted webhooks counted by each worker, read from its multiprocess value file."""
    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        for key, number, _ts, _pos in values:
            if "gateway_webhook_requests_total" in key and '"accepted"' in key:
                counts[pid] = counts.get(pid, 0.0) + number
    return counts


class GatewayTree:
    def __init__(
        self, rabbitmq_url: str, bus_prefix: str, metrics_dir: Path, *, logs: int = 0, **env: str
    ) -> None:
        self.port = _free_port()
        self.metrics_dir = metrics_dir
        self.seen: set[int] = set()  # every worker pid observed
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env={
                **os.environ,
                "META_WA_APP_SECRET": SECRET,
                "META_WA_VERIFY_TOKEN": VERIFY_TOKEN,
                "RABBITMQ_URL": rabbitmq_url,
                "BUS_PREFIX": bus_prefix,
                "HTTP_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(self.port),
                "GATEWAY_WORKERS": str(WORKERS),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "SHUTDOWN_GRACE_SECONDS": "5",
                "LOG_LEVEL": "WARNING",
                **env,
            },
            # Logs go to stdout: kept when a test reads them (``logs=subprocess.PIPE``).
            stdout=logs or subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> set[int]:
        current = _children(self.process.pid)
        self.seen |= current
        return current

    async def serving(self) -> None:
        """Every worker listens (a worker binds only once connected to the broker)."""
        await wait_for(
            lambda: (
                self.process.poll() is None
                and len(self.workers()) == WORKERS
                and _listeners(self.port) == WORKERS
            ),
            timeout=30,
            message=f"{WORKERS} gateway workers listening",
        )

    async def stop(self) -> None:
        """Stop the tree; every worker ever seen must be gone (none left listening)."""
        self.workers()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            await wait_for(
                lambda: not any(_alive(pid) for pid in self.seen), message="workers gone"
            )
        finally:
            for pid in self.seen:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    return tmp_path / "metrics"


@pytest.fixture
async def tree(
    rabbitmq_url: str, bus_prefix: str, metrics_dir: Path, bus: Bus
) -> AsyncIterator[GatewayTree]:
    # ``bus``: its teardown deletes what the workers declared on the prefix.
    gateway = GatewayTree(rabbitmq_url, bus_prefix, metrics_dir)
    try:
        await gateway.serving()
        yield gateway
    finally:
        await gateway.stop()


async def _post_each_on_its_own_connection(url: str, first: int, count: int) -> list[int]:
    """``count`` one-message webhooks, each on a new connection (spread over the workers)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(n: int) -> int:
            body = dumps(
                webhook(value(messages=[message(f"wamid.workers.{n}", "text", {"body": "Hola"})]))
            )
            async with http.post(
                f"{url}/webhook/whatsapp",
                data=body,
                headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
            ) as response:
                return response.status

        return list(await asyncio.gather(*(post(n) for n in range(first, first + count))))


async def _accepted_total(url: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    found = re.search(
        r'^gateway_webhook_requests_total\{endpoint="whatsapp",outcome="accepted"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


async def test_workers_share_the_port_and_metrics_are_summed(
    tree: GatewayTree, collector: Collector
) -> None:
    statuses = await _post_each_on_its_own_connection(tree.url, 0, 60)
    assert statuses == [200] * 60
    events = await collector.wait(60)
    assert sorted(e.wamid for e in events if isinstance(e, InboundMessage)) == sorted(
        f"wamid.workers.{n}" for n in range(60)
    )
    # Both workers took connections (60 connections all hashed to one: odds of 2^-59).
    by_pid = _accepted_by_pid(tree.metrics_dir)
    assert set(by_pid) == tree.workers() and all(count > 0 for count in by_pid.values())
    # Whichever worker answers /metrics reports the sum over both.
    for _ in range(4):
        assert await _accepted_total(tree.url) == 60.0


async def test_a_killed_worker_is_replaced_and_its_counts_kept(
    tree: GatewayTree, collector: Collector
) -> None:
    assert await _post_each_on_its_own_connection(tree.url, 0, 20) == [200] * 20
    before = tree.workers()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    await wait_for(
        lambda: victim not in tree.workers() and len(tree.workers()) == WORKERS,
        timeout=10,
        message="a replacement worker",
    )
    await tree.serving()
    assert await _post_each_on_its_own_connection(tree.url, 20, 20) == [200] * 20
    await collector.wait(40)
    # The dead worker's webhooks are still counted: a counter never goes back.
    assert await _accepted_total(tree.url) == 40.0


async def test_sigterm_stops_every_worker_gracefully(tree: GatewayTree) -> None:
    workers = tree.workers()
    tree.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(tree.process.wait, 20)
    assert code == 0
    await wait_for(lambda: not any(_alive(pid) for pid in workers), message="workers gone")
    assert _listeners(tree.port) == 0
    # The supervisor's own temporary directory is not used here (the test gave one): kept.
    assert tree.metrics_dir.exists()


async def test_workers_stop_when_their_supervisor_is_killed(tree: GatewayTree) -> None:
    workers = tree.workers()
    tree.process.kill()
    tree.process.wait()
    await wait_for(
        lambda: not any(_alive(pid) for pid in workers),
        timeout=15,
        message="orphaned workers stopping by themselves",
    )


async def test_workers_that_keep_dying_stop_the_supervisor(
    bus_prefix: str, metrics_dir: Path
) -> None:
    # Nothing listens on this port: each worker gives up at start-up and exits 1.
    gateway = GatewayTree(
        f"amqp://guest:guest@127.0.0.1:{_free_port()}/",
        bus_prefix,
        metrics_dir,
        logs=subprocess.PIPE,
        STARTUP_TIMEOUT_SECONDS="0.3",
    )
    try:
        code = await asyncio.to_thread(gateway.process.wait, 60)
        stderr = gateway.process.stderr.read().decode() if gateway.process.stderr else ""
        logs = gateway.process.stdout.read().decode() if gateway.process.stdout else ""
    finally:
        await gateway.stop()
    assert code == 1
    assert "cannot reach RabbitMQ" in stderr
    assert logs.count("worker died; restarting it") == RESTART_LIMIT
    assert "workers keep dying; stopping" in logs


def test_workers_setting_is_checked_at_start() -> None:
    env = {
        **os.environ,
        "META_WA_APP_SECRET": "s",
        "META_WA_VERIFY_TOKEN": "v",
        "GATEWAY_WORKERS": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "GATEWAY_WORKERS" in result.stderr


def test_unwritable_metrics_directory_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {
        **os.environ,
        "META_WA_APP_SECRET": "s",
        "META_WA_VERIFY_TOKEN": "v",
        "GATEWAY_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (
        "PROMETHEUS_MULTIPROC_DIR" in result.stderr and "not a writable directory" in result.stderr
    )
