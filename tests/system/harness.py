"""The whole of Mensajero as separate processes, the way `make run` starts it.

Each test system gets free ports on 127.0.0.1, its own bus prefix and its own schemas, so
systems never see each other. Processes can be stopped (SIGTERM), killed (SIGKILL) and started
again mid-test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from shared.db import drop_schema

SERVICES = ("gateway", "sender", "handoff", "notifier")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortTaken(AssertionError):
    """A port picked for the system was taken meanwhile by another process of the machine
    (other test runs pick free ports too): the system starts again on new ports."""


def _listening_inodes(port: int) -> set[str] | None:
    """The inodes of the sockets listening on ``port``; None where /proc cannot tell."""
    found: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            cells = line.split()
            if len(cells) > 9 and cells[3] == "0A" and int(cells[1].rsplit(":", 1)[1], 16) == port:
                found.add(cells[9])
    return found if readable else None


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the gateway's workers, with GATEWAY_WORKERS > 1)."""
    tree, index = [pid], 0
    while index < len(tree):
        for children in Path(f"/proc/{tree[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                tree += [int(child) for child in children.read_text().split()]
        index += 1
    return tree


def listens(pid: int, port: int) -> bool:
    """Whether the process ``pid`` (or a child of it) is what listens on ``port``."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return True  # no /proc: cannot tell, trust the answer
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for member in _process_tree(pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{member}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        return True
    return False


@dataclass
class System:
    unique: str
    rabbitmq_url: str
    database_url: str
    logs: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.pick_ports()

    def pick_ports(self) -> None:
        for name in ("ses", "sandbox", *SERVICES):
            self.ports[name] = free_port()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def prefix(self) -> str:
        return f"test.{self.unique}"

    def schema(self, service: str) -> str:
        return f"t_{self.unique}_{service}"

    def env(self, name: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": os.getcwd(),
            "PYTHONUNBUFFERED": "1",
            "MENSAJERO_ENV": "sandbox",
            "HTTP_HOST": "127.0.0.1",
            "RABBITMQ_URL": self.rabbitmq_url,
            "DATABASE_URL": self.database_url,
            "BUS_PREFIX": self.prefix,
            "DB_SCHEMA": self.schema(name),
            "GATEWAY_PORT": str(self.ports["gateway"]),
            "SENDER_PORT": str(self.ports["sender"]),
            "HANDOFF_PORT": str(self.ports["handoff"]),
            "NOTIFIER_PORT": str(self.ports["notifier"]),
            "SANDBOX_PORT": str(self.ports["sandbox"]),
            "SANDBOX_HOST": "127.0.0.1",
            "SANDBOX_WEBHOOK_URL": f"{self.url('gateway')}/webhook/whatsapp",
            "SANDBOX_STATUS_DELAYS_MS": "20,40,60",
            "META_GRAPH_URL": self.url("sandbox"),
            "SES_ENDPOINT_URL": self.url("ses"),
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "STARTUP_TIMEOUT_SECONDS": "20",
            "SHUTDOWN_GRACE_SECONDS": "5",
            "LOG_LEVEL": "DEBUG",
        }
        env.update(self.extra_env)
        return env

    def argv(self, name: str) -> list[str]:
        if name == "ses":
            return [
                sys.executable,
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.ports["ses"]),
            ]
        return [sys.executable, "-m", name]

    def health_url(self, name: str) -> str:
        if name == "ses":
            return f"{self.url('ses')}/moto-api/"
        if name == "sandbox":
            return f"{self.url('sandbox')}/_sandbox/messages"
        return f"{self.url(name)}/readyz"

    async def start(self, name: str, timeout: float = 30.0) -> None:
        await self.spawn(name)
        await self.wait_healthy(name, timeout)

    async def spawn(self, name: str) -> None:
        log = await asyncio.to_thread((self.logs / f"{name}.log").open, "ab")
        process = await asyncio.create_subprocess_exec(
            *self.argv(name), env=self.env(name), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.processes[name] = process

    async def wait_healthy(self, name: str, timeout: float) -> None:
        assert self.session is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.returncode is not None:
                tail = self.tail(name)
                error = PortTaken if "address already in use" in tail else AssertionError
                raise error(f"{name} exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session.get(self.health_url(name)) as response:
                    if response.status == 200:
                        if not listens(process.pid, self.ports[name]):
                            raise PortTaken(f"{name}: port {self.ports[name]} is not its own")
                        return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name} not ready after {timeout}s:\n{self.tail(name)}")

    async def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        process = self.processes.pop(name)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        return process.returncode or 0

    async def kill(self, name: str) -> None:
        await self.stop(name, signal.SIGKILL)

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])

    # -------------------------------------------------------------- talking to it

    async def get_json(self, url: str) -> Any:
        assert self.session is not None
        async with self.session.get(url) as response:
            response.raise_for_status()
            return await response.json(content_type=None)  # moto says application/javascript

    async def post_json(self, url: str, body: Any) -> Any:
        assert self.session is not None
        async with self.session.post(url, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def mails_to(self, address: str) -> list[dict[str, Any]]:
        """The mail moto's SES accepted for ``address``."""
        data = await self.get_json(f"{self.url('ses')}/moto-api/data.json")
        return [
            m
            for m in data.get("ses", {}).get("Message", [])
            if address in [a for group in m["destinations"].values() for a in group]
        ]

    async def metrics(self, name: str) -> dict[str, float]:
        """A service's /metrics as {'name{labels}': value}."""
        assert self.session is not None
        async with self.session.get(f"{self.url(name)}/metrics") as response:
            text = await response.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    async def metric_total(self, name: str, metric: str) -> float:
        """The sum of a counter over all its label sets."""
        return sum(v for k, v in (await self.metrics(name)).items() if k.split("{")[0] == metric)

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> System:
        self.session = aiohttp.ClientSession()
        try:
            for attempt in range(1, 4):
                try:
                    await self._start_all()
                    return self
                except PortTaken:
                    if attempt == 3:
                        raise
                    await asyncio.gather(*(self.stop(name) for name in list(self.processes)))
                    self.pick_ports()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        raise AssertionError("unreachable")

    async def _start_all(self) -> None:
        names = ("ses", "sandbox", *SERVICES)
        # All at once: the services wait for each other's queues and the broker themselves.
        for name in names:
            await self.spawn(name)
        waits = [asyncio.create_task(self.wait_healthy(name, 60)) for name in names]
        try:
            await asyncio.gather(*waits)
        finally:  # the first failure ends the other waits
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self.processes)))
        if self.session is not None:
            await self.session.close()
        for service in SERVICES:
            await drop_schema(self.database_url, self.schema(service))
        await delete_queues(self.rabbitmq_url, self.prefix)


async def delete_queues(rabbitmq_url: str, prefix: str) -> None:
    """Remove a test prefix's queues and exchanges (best effort, via rabbitmqctl when local)."""
    import aio_pika

    names: list[str] = []
    ctl = shutil.which("rabbitmqctl")
    if ctl and "127.0.0.1" in rabbitmq_url:
        listing = await asyncio.create_subprocess_exec(
            ctl, "-q", "list_queues", "name", stdout=asyncio.subprocess.PIPE
        )
        output, _ = await asyncio.wait_for(listing.communicate(), 30)
        names = [n for n in output.decode().split() if n.startswith(prefix + ".")]
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        for name in names:
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        for exchange in (prefix, f"{prefix}.dlx"):
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()
