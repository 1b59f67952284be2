"""`python -m sandbox`: it serves, stops on SIGTERM, and names a bad setting."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp

from tests.helpers import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDBOX_", "META_WA_"))}
    env.update({"PYTHONPATH": os.getcwd(), **extra})
    return env


async def test_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "serve",
        env=environment(SANDBOX_PORT=str(port), SANDBOX_HOST="127.0.0.1"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:

            async def healthy() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/_sandbox/health") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(healthy, timeout=20, message="the sandbox to listen")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, output.decode()


async def test_bad_setting_exits_2_naming_it() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox",
        env=environment(SANDBOX_PORT="not-a-port"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert "port" in err.decode()
