"""A RabbitMQ node and a PostgreSQL cluster of the chaos run's own, on free ports.

The shared servers (5672, 5432) are never touched: these two are stopped, restarted and have
their connections closed at will, and are removed at the end (data deleted, processes gone).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.bus import PUBLISHING_SUFFIX
from tests.system.harness import free_port

GUEST_AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


class InfraError(Exception):
    pass


async def run(
    argv: list[str], env: dict[str, str] | None = None, *, timeout: float = 60.0
) -> tuple[int, str]:
    """Run a command; its exit code and its output (stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise InfraError(f"{argv[0]} did not finish within {timeout}s: {argv}") from None
    return process.returncode or 0, output.decode("utf-8", "replace")


async def must(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
    code, output = await run(argv, env, timeout=timeout)
    if code != 0:
        raise InfraError(f"{' '.join(argv)} exited with {code}:\n{output}")
    return output


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not reaped yet) is gone for our purposes.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return True


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (what a teardown must leave none of)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes() and process_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _folder_with(programs: tuple[str, ...], variable: str, usual: list[Path]) -> Path:
    """The first folder holding all ``programs``: ``$variable``, then the usual places, then
    the folder of the first one on PATH."""
    given = os.environ.get(variable)
    candidates = [Path(given)] if given else []
    candidates += usual
    found = shutil.which(programs[0])
    if found:
        candidates.append(Path(found).resolve().parent)
    for folder in candidates:
        if all((folder / program).exists() for program in programs):
            return folder
    raise InfraError(f"{programs[0]} not found (set {variable} to its folder)")


def _rabbitmq_bin() -> Path:
    # The broker's own scripts: the Debian package's /usr/sbin wrappers switch to the rabbitmq
    # user and its cookie, which a private node must not share.
    usual = [Path("/usr/lib/rabbitmq/bin")]
    return _folder_with(("rabbitmq-server", "rabbitmqctl"), "CHAOS_RABBITMQ_BIN", usual)


def _postgres_bin() -> Path:
    usual = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return _folder_with(("initdb", "pg_ctl"), "CHAOS_PG_BIN", usual)


class RabbitNode:
    """A RabbitMQ node with its own name, ports, data, logs and Erlang cookie."""

    def __init__(self, root: Path, logs: Path, run_id: str) -> None:
        self.root = root / "rabbitmq"
        self.logs = logs
        self.bin = _rabbitmq_bin()
        self.port = free_port()
        self.dist_port = free_port()
        self.http_port = free_port()  # the management API: closes a connection in ms
        self.node = f"chaos-{run_id}@localhost"
        self.process: asyncio.subprocess.Process | None = None
        self.pids: set[int] = set()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        root = str(self.root)
        return {
            **os.environ,
            # Erlang keeps the cookie in $HOME: a private one, so nothing else can talk to it.
            "HOME": root,
            "RABBITMQ_NODENAME": self.node,
            # Our own files, so that /etc/rabbitmq's (the shared node's port) are not read.
            "RABBITMQ_CONF_ENV_FILE": f"{root}/rabbitmq-env.conf",
            "RABBITMQ_CONFIG_FILE": f"{root}/rabbitmq.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{root}/enabled_plugins",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{root}/mnesia",
            "RABBITMQ_LOG_BASE": str(self.logs / "rabbitmq"),
            "RABBITMQ_PID_FILE": f"{root}/pid",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # The AMQP listener only in the config file: RABBITMQ_NODE_PORT would add a second one.
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.http_port}\n"
            "collect_statistics_interval = 1000\n"
        )
        # The consistent-hash exchange: handoff's partitions (shared.bus).
        (self.root / "enabled_plugins").write_text(
            "[rabbitmq_management,rabbitmq_consistent_hash_exchange].\n"
        )
        (self.root / "rabbitmq-env.conf").write_text("")

    async def start(self, timeout: float = 120.0) -> None:
        self._write_config()
        log = (self.logs / "rabbitmq-server.out").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            str(self.bin / "rabbitmq-server"), env=self.env(), stdout=log, stderr=log
        )
        log.close()
        self.pids.add(self.process.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.returncode is not None:
                raise InfraError(f"RabbitMQ node {self.node} exited: see {self.logs}/rabbitmq")
            code, _ = await run(self.ctl_argv("await_startup", "--timeout", "30"), self.env())
            if code == 0 and await self._api_answers():
                return
            if time.monotonic() > deadline:
                raise InfraError(f"RabbitMQ node {self.node} not up after {timeout}s")
            await asyncio.sleep(0.5)

    async def stop(self, timeout: float = 60.0) -> None:
        """Stop the whole node (the Erlang VM halts), as an operator's restart does."""
        if self.process is None:
            return
        if self.process.returncode is None:
            await run(self.ctl_argv("stop"), self.env(), timeout=timeout)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None

    def ctl_argv(self, *args: str) -> list[str]:
        return [str(self.bin / "rabbitmqctl"), "-q", "-n", self.node, *args]

    async def ctl(self, *args: str) -> str:
        return await must(self.ctl_argv(*args), self.env())

    async def ctl_json(self, *args: str) -> list[dict[str, Any]]:
        output = await self.ctl(*args, "--formatter", "json")
        return list(json.loads(output)) if output.strip() else []

    async def _api(self, method: str, path: str) -> Any:
        """The management API (rabbitmqctl needs seconds to start; a fault must land now)."""
        url = f"http://127.0.0.1:{self.http_port}/api/{path}"
        headers = {"Authorization": GUEST_AUTH, "X-Reason": "chaos"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.request(method, url) as answer,
        ):
            if answer.status >= 300 and answer.status != 404:  # 404: closed meanwhile
                raise InfraError(f"{method} {url}: {answer.status} {await answer.text()}")
            return await answer.json() if answer.status == 200 else None

    async def _api_answers(self) -> bool:
        try:
            await self._api("GET", "overview")
        except (aiohttp.ClientError, InfraError):
            return False
        return True

    async def connections(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._api("GET", "connections")
        return found

    async def close_connections_named(self, name: str) -> int:
        """Close the connections of the services' buses named ``name`` (``Bus(name=...)``): the
        bus's own and its publishing one (``name.publish``)."""
        names = {name, f"{name}{PUBLISHING_SUFFIX}"}
        found = [
            c["name"]
            for c in await self.connections()
            if (c.get("client_properties") or {}).get("connection_name") in names
        ]
        await self._close(found)
        return len(found)

    async def close_all_connections(self) -> int:
        found = [c["name"] for c in await self.connections()]
        await self._close(found)
        return len(found)

    async def _close(self, names: list[str]) -> None:
        await asyncio.gather(
            *(self._api("DELETE", f"connections/{quote(n, safe='')}") for n in names)
        )

    async def queue_depths(self) -> dict[str, int]:
        """Messages in each queue, ready or delivered and not yet acknowledged."""
        rows = await self.ctl_json(
            "list_queues", "name", "messages_ready", "messages_unacknowledged"
        )
        return {
            r["name"]: int(r["messages_ready"] or 0) + int(r["messages_unacknowledged"] or 0)
            for r in rows
        }

    async def remove(self) -> None:
        await self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PgCluster:
    """A PostgreSQL cluster (initdb) on its own port, trust auth, socket in its own folder."""

    def __init__(self, root: Path, logs: Path) -> None:
        self.root = root / "postgresql"
        self.data = self.root / "data"
        self.log = logs / "postgresql.log"
        self.bin = _postgres_bin()
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *argv: str) -> list[str]:
        # PostgreSQL refuses to run as root: as root, run it as the postgres user.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    async def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres")
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres"]
        await must(self._as_owner(*initdb, "--auth=trust", "-E", "UTF8", "--no-sync"))
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            "fsync": "off",  # a fast restart is clean anyway; this only spares the shared disk
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    async def start(self) -> None:
        pg_ctl = str(self.bin / "pg_ctl")
        await must(self._as_owner(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "start"))

    async def stop(self) -> None:
        """A fast shutdown: sessions are ended, as in an operator's restart."""
        if (self.data / "postmaster.pid").exists():
            pg_ctl = str(self.bin / "pg_ctl")
            await must(self._as_owner(pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"))

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    async def remove(self) -> None:
        await self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]
