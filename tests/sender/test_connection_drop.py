"""The sender's broker connection is closed by the broker while Graph calls are in flight.

The handlers are cancelled mid-call; Meta (the sandbox) has the requests and answers them. The
redelivered commands must not send them again: every message reaches its phone exactly once,
and every status is filed under its own message.
"""

from __future__ import annotations

from collections import Counter

import pytest
from aiohttp import web

from sender.app import send_queue_spec, status_queue_spec
from shared.events import MessageSent, SendMessage
from tests.helpers import close_broker_connections, wait_for
from tests.sender.conftest import Stack, service_of

pytestmark = pytest.mark.integration

PHONES = [f"+54911700{i:05d}" for i in range(60)]
MESSAGES = 180


def commands() -> list[SendMessage]:
    return [
        SendMessage.model_validate(
            {"to": PHONES[i % len(PHONES)], "content": {"kind": "text", "body": f"drop-{i}"}}
        )
        for i in range(MESSAGES)
    ]


async def test_closed_connection_mid_call_sends_each_message_once(
    stack: Stack, rabbitmq_url: str, unique: str
) -> None:
    name = f"sender-{unique}"
    assert stack.start_app is not None
    app: web.Application = await stack.start_app(
        RABBITMQ_URL=f"{rabbitmq_url}?name={name}", SENDER_REQUEST_TIMEOUT_SECONDS=5.0
    )
    settings = stack.settings_for()
    await stack.bus.declare_service_queue(send_queue_spec(settings))
    await stack.bus.declare_service_queue(status_queue_spec(settings))
    # Meta answers slowly: many calls are in flight when the connection goes.
    await stack.fault(latency_ms=1500)
    sent = commands()
    await stack.bus.publish_many(sent)

    # The sandbox counts a send as accepted when it answers; wait for the first answers, so
    # the next wave is certainly mid-call when the connection is closed.
    await wait_for(
        lambda: _accepted_at_least(stack, 20), timeout=30, message="first sends answered"
    )
    assert await close_broker_connections(name) == 2
    await wait_for(
        lambda: service_of(app).bus.is_connected(), timeout=30, message="sender reconnected"
    )
    await stack.clear_faults()

    for command in sent:
        await stack.sent(command, timeout=90)
    bodies: Counter[str] = Counter()
    for phone in PHONES:
        for record in await stack.phone(phone):
            bodies[record["body"]["text"]["body"]] += 1
    assert set(bodies) == {f"drop-{i}" for i in range(MESSAGES)}
    assert sorted(b for b, n in bodies.items() if n > 1) == []
    # One MessageSent per command, and its wamid is the one the phone got.
    wamids = {r["body"]["text"]["body"]: r["wamid"] for p in PHONES for r in await stack.phone(p)}
    for event in stack.of(MessageSent):
        command = next(c for c in sent if c.event_id == event.command_id)
        assert command.content.kind == "text"
        assert event.wamid == wamids[command.content.body]


async def _accepted_at_least(stack: Stack, count: int) -> bool:
    return len((await stack.accepted())["messages"]) >= count
