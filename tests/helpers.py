"""Small test utilities: wait on a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

from shared.bus import PUBLISHING_SUFFIX


async def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message} (last={last!r})"
            )
        await asyncio.sleep(interval)


async def close_broker_connections(name: str, reason: str = "closed by a test") -> int:
    """Close, from the broker's side, a bus's AMQP connections: those named ``name`` (a client
    sets the name with ``?name=`` in its URL) and its publishing one (``name.publish``), as a
    broker or a network fault would; returns how many (2 for one bus)."""
    listing = await _rabbitmqctl(
        "list_connections", "-q", "--no-table-headers", "pid", "client_properties"
    )
    wanted = [f'{{"connection_name","{n}"}}' for n in (name, f"{name}{PUBLISHING_SUFFIX}")]
    pids = [
        line.split("\t")[0] for line in listing.splitlines() if any(each in line for each in wanted)
    ]
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, reason)
    return len(pids)


async def broker_channel_count(name: str) -> int:
    """Channels the broker has open on the AMQP connections named ``name``."""
    listing = await _rabbitmqctl(
        "list_connections", "-q", "--no-table-headers", "channels", "client_properties"
    )
    wanted = f'{{"connection_name","{name}"}}'
    return sum(int(line.split("\t")[0]) for line in listing.splitlines() if wanted in line)


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed: {err.decode()[:500]}")
    return out.decode()
