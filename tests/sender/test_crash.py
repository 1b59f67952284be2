"""SIGKILL a ``python -m sender`` mid-backlog, start it again: every message arrives once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sender.app import send_queue_spec, status_queue_spec
from shared.events import MessageSent, SendMessage
from tests.helpers import wait_for
from tests.sender.conftest import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RATE = 50


def start_sender(stack: Stack) -> subprocess.Popen[bytes]:
    env = {**os.environ, **{k: str(v) for k, v in stack.settings.items()}}
    env.update(
        SENDER_RATE_PER_SECOND=str(RATE),
        HTTP_HOST="127.0.0.1",
        SENDER_PORT="0",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "sender"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    await asyncio.to_thread(process.wait, 20)


@pytest.mark.parametrize("sandbox_overrides", [{"rate_per_second": RATE}])
async def test_sigkill_mid_backlog_then_restart_delivers_each_message_once(stack: Stack) -> None:
    phones = [f"+54911600{i:05d}" for i in range(40)]
    commands = [
        SendMessage.model_validate(
            {"to": phones[i % len(phones)], "content": {"kind": "text", "body": f"msg-{i}"}}
        )
        for i in range(200)
    ]
    settings = stack.settings_for()
    # The queues exist before the commands are published (as once the sender has run).
    await stack.bus.declare_service_queue(send_queue_spec(settings))
    await stack.bus.declare_service_queue(status_queue_spec(settings))
    await stack.bus.publish_many(commands)
    first = start_sender(stack)
    try:

        async def accepted_count() -> int:
            return len((await stack.accepted())["messages"])

        await wait_for(lambda: _at_least(accepted_count, 60), timeout=30, message="backlog")
        await stop(first, signal.SIGKILL)
        assert first.returncode == -signal.SIGKILL
    finally:
        await stop(first, signal.SIGKILL)

    second = start_sender(stack)
    try:
        for command in commands:
            await stack.sent(command, timeout=60)
    finally:
        await stop(second, signal.SIGTERM)
    assert second.returncode == 0, second.stderr.read() if second.stderr else ""

    bodies: Counter[str] = Counter()
    for phone in phones:
        for record in await stack.phone(phone):
            bodies[record["body"]["text"]["body"]] += 1
    assert set(bodies) == {f"msg-{i}" for i in range(200)}
    assert [b for b, n in bodies.items() if n > 1] == []
    assert len({e.command_id for e in stack.of(MessageSent)}) == 200


async def _at_least(count: object, n: int) -> bool:
    return await count() >= n  # type: ignore[operator, no-any-return]
