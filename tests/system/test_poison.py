"""Webhooks the gateway accepts never poison a consumer (issue 11, hole 5).

Real processes (gateway, handoff, sender, notifier, the sandbox as Meta, moto as SES), real
RabbitMQ and PostgreSQL. A NUL in a customer's text and name used to fail handoff's insert (the
message was dead-lettered after ~13 minutes and the customer never answered); a NUL in a bounced
address, or an address too long for the notifier's index, dead-lettered the bounce. Then a corpus
of hypothesis's nastiest webhooks (tests/gateway/fuzzing.py) goes through every consumer: none
may fail a single time, and no ``.dead`` queue may hold anything.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
from hypothesis import given

from shared.settings import SANDBOX_DEFAULTS
from tests.gateway.fuzzing import (
    CORPUS_EXAMPLES,
    CORPUS_SETTINGS,
    Request,
    ses_requests,
    whatsapp_requests,
)
from tests.gateway.payloads import sign, status, value, webhook
from tests.helpers import wait_for
from tests.snsfake import FakeSns, serve_fake_sns
from tests.system.harness import SERVICES, System

# One system for the module: starting it takes longer than these tests.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SECRET = SANDBOX_DEFAULTS["META_WA_APP_SECRET"]
CUSTOMER = "+5491135722871"
# Each consuming service's queue, with the wait queues of its retry tiers.
CONSUMER_QUEUES = ("handoff", "notifier", "sender", "sender-status")
# What the bus logs when a handler fails (it is then retried, and dead-lettered in the end).
FAILURES = ("handler failed", "dead-lettered", "message rejected")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sns() -> AsyncIterator[FakeSns]:
    async for fake in serve_fake_sns():
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def poison_system(
    rabbitmq_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory, sns: FakeSns
) -> AsyncIterator[System]:
    unique = uuid.uuid4().hex[:10]
    system = System(unique, rabbitmq_url, database_url, tmp_path_factory.mktemp("poison"))
    system.extra_env.update(
        {
            "SNS_TRUSTED_CERT_URL_PREFIXES": f'["{sns.base}/"]',
            "ERROR_LOG_EMAIL": f"ops-{unique}@example.com",
            # A status for a wamid nobody sent is given up after this (it may race its send).
            "SENDER_STATUS_ORPHAN_SECONDS": "1",
            # An error mail queued twice (its digest and itself) waits out the other's lease
            # before it finds it sent: a wait, not a failure, but two minutes by default.
            "EMAIL_CLAIM_LEASE_SECONDS": "3",
        }
    )
    async with system:
        yield system


async def post(system: System, request: Request) -> int:
    assert system.session is not None
    url = system.url("gateway") + request.path
    async with system.session.post(url, data=request.body, headers=request.headers) as answer:
        await answer.read()
        return answer.status


def whatsapp(payload: Any) -> Request:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, SECRET)}
    return Request("/webhook/whatsapp", body, headers)


def ses(sns: FakeSns, event: dict[str, Any]) -> Request:
    body = json.dumps(sns.message(message=event)).encode()
    return Request("/webhook/ses", body, {"Content-Type": "text/plain; charset=UTF-8"})


async def queue_names(system: System) -> list[str]:
    """The consumers' queues: main, retry tiers, dead (from the bus's own naming)."""
    from handoff.handlers import TABLE as HANDOFF_TABLE
    from handoff.settings import Settings as HandoffSettings
    from notifier.handlers import TABLE as NOTIFIER_TABLE
    from sender.app import send_queue_spec, status_queue_spec
    from sender.settings import Settings as SenderSettings
    from shared.bus import Names
    from shared.settings import load_settings

    env = system.env("sender")
    sender = load_settings(SenderSettings, **{k: v for k, v in env.items() if k.isupper()})
    specs = [
        HANDOFF_TABLE.spec(partitions=HandoffSettings.model_fields["HANDOFF_PARTITIONS"].default),
        NOTIFIER_TABLE.spec(),
        send_queue_spec(sender),
        status_queue_spec(sender),
    ]
    names = Names(system.prefix)
    found = []
    for spec in specs:
        for queue in spec.queues:  # handoff's partitions
            found.append(names.queue(queue))
            found += [names.wait_queue(queue, tier) for tier in spec.retry_tiers_ms]
        found.append(names.dead_queue(spec.service))
    return found


async def depths(system: System, names: list[str]) -> dict[str, int]:
    """Ready messages per queue (a queue not declared yet counts as empty)."""
    connection = await aio_pika.connect(system.rabbitmq_url)
    found: dict[str, int] = {}
    try:
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                found[name] = queue.declaration_result.message_count or 0
            except aio_pika.exceptions.ChannelClosed:
                found[name] = 0
            finally:
                if not channel.is_closed:
                    await channel.close()
    finally:
        await connection.close()
    return found


async def assert_settled_without_failures(system: System, timeout: float = 60.0) -> None:
    """Every consumer queue and retry tier empties (twice in a row: a message between the queue
    and its consumer is in neither), no ``.dead`` queue holds anything, no handler ever failed."""
    names = await queue_names(system)
    empty_in_a_row = 0
    pending: dict[str, int] = {}

    async def settled() -> bool:
        nonlocal empty_in_a_row, pending
        found = await depths(system, names)
        dead = {name: n for name, n in found.items() if name.endswith(".dead") and n}
        assert not dead, f"dead-lettered: {dead}"
        pending = {name: n for name, n in found.items() if n}
        empty_in_a_row = 0 if pending else empty_in_a_row + 1
        return empty_in_a_row >= 2

    try:
        await wait_for(settled, timeout=timeout, interval=0.3, message="empty queues")
    except AssertionError:
        raise AssertionError(f"after {timeout}s, messages still in {pending}") from None
    await asyncio.sleep(0.1)  # the log writer flushes every 50 ms
    for service in ("handoff", "notifier", "sender"):
        log = system.tail(service, 100_000)
        failures = [line for line in log.splitlines() if any(f in line for f in FAILURES)]
        assert not failures, f"{service}: {failures[:5]}"


async def test_nul_and_oversized_values_reach_every_consumer_and_are_handled(
    poison_system: System, sns: FakeSns, database_url: str
) -> None:
    system = poison_system
    unique = system.unique
    # A customer whose name and text hold NULs gets the bot's menu.
    answer = await system.post_json(
        f"{system.url('sandbox')}/_sandbox/inbound",
        {"from": CUSTOMER, "name": "Ana\u0000María", "text": "Hola\u0000"},
    )
    assert answer["gateway_status"] == 200

    async def menu() -> list[dict[str, Any]]:
        inbox = await system.get_json(
            f"{system.url('sandbox')}/_sandbox/phones/{CUSTOMER}/messages"
        )
        return [m for m in inbox["messages"] if m["type"] == "interactive"]

    await wait_for(menu, timeout=30, message="the bot's menu at the customer's phone")
    handoff = await asyncpg.connect(
        database_url, server_settings={"search_path": system.schema("handoff")}
    )
    try:
        name = await handoff.fetchval("SELECT name FROM conversations WHERE phone = $1", CUSTOMER)
        text = await handoff.fetchval(
            "SELECT text FROM messages WHERE author = 'customer' AND customer ="
            " (SELECT customer FROM conversations WHERE phone = $1)",
            CUSTOMER,
        )
    finally:
        await handoff.close()
    assert (name, text) == ("Ana\ufffdMaría", "Hola\ufffd")

    # A bounce naming a NUL address, an address too long for an index, and a real one.
    good = f"real-{unique}@example.com"
    bounce = {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "Gen\u0000eral",
            "bouncedRecipients": [
                {"emailAddress": "nadie\u0000@example.com"},
                {"emailAddress": "a" * 4600 + "@example.com"},
                {"emailAddress": good},
            ],
        },
        "mail": {"messageId": f"ses-\u0000{unique}"},
    }
    assert await post(system, ses(sns, bounce)) == 200

    async def suppressed() -> bool:
        total = await system.metric_total("notifier", "notifier_addresses_suppressed_total")
        return total >= 1

    await wait_for(suppressed, timeout=30, message="the real address suppressed")
    notifier = await asyncpg.connect(
        database_url, server_settings={"search_path": system.schema("notifier")}
    )
    try:
        rows = await notifier.fetch("SELECT address, detail FROM suppressed_addresses")
    finally:
        await notifier.close()
    assert [(r["address"], r["detail"]) for r in rows] == [(good, "Gen\ufffderal")]

    # A status for a wamid and recipient holding NULs: the sender looks them up and lets go.
    wamid = f"wamid.\u0000{uuid.uuid4().hex}"
    nul_status = status(wamid, "delivered", "1700000000", recipient_id="54911\u00003572")
    assert await post(system, whatsapp(webhook(value(statuses=[nul_status])))) == 200
    await wait_for(
        lambda: wamid.replace("\u0000", "\ufffd") in system.tail("sender", 2000),
        timeout=30,
        message="the sender's line for the unknown status",
    )
    await assert_settled_without_failures(system)


async def test_malformed_requests_are_one_warning_line_in_every_service(
    poison_system: System,
) -> None:
    system = poison_system
    for service in SERVICES:
        reader, writer = await asyncio.open_connection("127.0.0.1", system.ports[service])
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.split(b" ", 2)[1] == b"400", (service, answer)

        def logged(name: str = service) -> list[str]:
            lines = system.tail(name, 5000).splitlines()
            return [line for line in lines if "malformed HTTP request" in line]

        [line] = await wait_for(logged, message=f"{service}'s line for the malformed request")
        assert " WARNING " in line and "Content-Length" in line, line
        assert "Traceback" not in system.tail(service, 5000)


async def test_generated_nasty_webhooks_never_make_a_consumer_fail(
    poison_system: System, sns: FakeSns
) -> None:
    """A corpus of hypothesis's hostile requests, signed, through every consumer."""
    corpus: list[Request] = []

    @CORPUS_SETTINGS
    @given(whatsapp_requests(SECRET, signed_only=True) | ses_requests(sns, signed_only=True))
    def collect(request: Request) -> None:
        corpus.append(request)

    collect()
    assert corpus
    answers: dict[int, int] = {}
    for request in corpus:
        answer = await post(poison_system, request)
        assert 200 <= answer < 300 or 400 <= answer < 500, (answer, request)
        answers[answer] = answers.get(answer, 0) + 1
    assert answers.get(200, 0) > len(corpus) // 4, answers  # most reach the consumers
    await assert_settled_without_failures(poison_system, timeout=60 + CORPUS_EXAMPLES)
