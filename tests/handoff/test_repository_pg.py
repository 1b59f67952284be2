"""The PostgreSQL adapter under concurrency: atomic claims, one open case, timers fired once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from handoff.repository import Case, ConcurrentUpdate, Conversation, Outgoing, PgRepository
from handoff.service import Handoff, HandoffConfig
from handoff.timers import fire_due
from shared.bus import Bus
from shared.db import Pool, create_pool, load_migrations, migrate
from shared.events import MessageSent
from shared.profiles import Profiles
from tests.handoff.support import AGENT, CUSTOMER, drop_handoff_queue

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str, db_schema: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, db_schema, max_size=12)
    await migrate(pool, db_schema, load_migrations("handoff"))
    yield pool
    await pool.close()


async def seed_case(pool: Pool, code: str, customer: str = CUSTOMER) -> None:
    async with pool.acquire() as conn:
        repo = PgRepository(conn)
        if await repo.get_conversation(customer) is None:
            await repo.add_conversation(
                Conversation(customer, customer, None, "Ana", "1", "default")
            )
        await repo.add_case(Case(code, customer, "1", "default", "queued", "phrase", NOW, NOW))


async def test_claim_is_atomic_across_connections(pool: Pool) -> None:
    await seed_case(pool, "ABC")

    async def claim(agent: str) -> Case | None:
        async with pool.acquire() as conn, conn.transaction():
            return await PgRepository(conn).claim_case("ABC", agent, NOW)

    results = await asyncio.gather(*(claim(f"+54911000000{i:02d}") for i in range(10)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].state == "active"


async def test_one_open_case_per_customer(pool: Pool) -> None:
    await seed_case(pool, "A1")
    with pytest.raises(ConcurrentUpdate):
        await seed_case(pool, "A2")


async def test_stale_version_is_a_conflict(pool: Pool) -> None:
    await seed_case(pool, "V1")
    async with pool.acquire() as conn:
        repo = PgRepository(conn)
        first = await repo.get_conversation(CUSTOMER)
        second = await repo.get_conversation(CUSTOMER)
        assert first is not None and second is not None
        first.name = "Primera"
        await repo.save_conversation(first)
        second.name = "Segunda"
        with pytest.raises(ConcurrentUpdate):
            await repo.save_conversation(second)


async def test_due_timers_fire_once_across_concurrent_pollers(
    pool: Pool, database_url: str, db_schema: str, bus: Bus
) -> None:
    from handoff.app import queue_spec
    from shared.bus import QueueSpec

    # Something must be bound to whatsapp.send.requested for the publishes to be routable.
    await bus.declare_service_queue(QueueSpec("sink", ["#"], retry_tiers_ms=(100,)))
    codes = [f"T{i}" for i in range(12)]
    for index, code in enumerate(codes):
        await seed_case(pool, code, customer=f"+54911555500{index:02d}")
        async with pool.acquire() as conn:
            await PgRepository(conn).schedule(code, "queue", NOW - timedelta(seconds=1))
    other = await create_pool(database_url, db_schema, max_size=4)
    core = Handoff(Profiles(), HandoffConfig([AGENT], 600, 3600), clock=lambda: NOW)
    try:
        fired = await asyncio.gather(
            *(fire_due(p, bus, core, None) for p in (pool, other, pool, other))
        )
    finally:
        await other.close()
    assert sum(fired) == len(codes)
    async with pool.acquire() as conn:
        unattended = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE event_type = 'handoff.unattended'"
        )
        pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        states = await conn.fetch("SELECT DISTINCT state, end_reason FROM cases")
    assert unattended == len(codes)
    assert pending == 0
    assert [(r["state"], r["end_reason"]) for r in states] == [("closed", "timeout")]
    await drop_handoff_queue(bus)
    assert queue_spec().service == "handoff"


@pytest.mark.parametrize("fallback_first", [False, True])
async def test_the_fallback_templates_wamid_wins_whatever_the_order(
    pool: Pool, fallback_first: bool
) -> None:
    # A command's first send was accepted, then Meta said the window was closed: the sender
    # sent its fallback template (a second MessageSent). The template is what the person saw.
    await seed_case(pool, "W1")
    first = MessageSent(
        command_id="cmd-1", wamid="wamid.first", to=CUSTOMER, phone_number_id="1", kind="text"
    )
    fallback = first.model_copy(
        update={"event_id": "other", "wamid": "wamid.template", "used_fallback_template": True}
    )
    core = Handoff(Profiles(), HandoffConfig([AGENT], 600, 3600), clock=lambda: NOW)
    async with pool.acquire() as conn:
        repo = PgRepository(conn)
        await repo.add_outgoing(Outgoing("cmd-1", "W1", CUSTOMER, "customer", None))
        for sent in [fallback, first] if fallback_first else [first, fallback]:
            await core.on_sent(repo, sent)
        await core.on_sent(repo, first)  # a replay of the first changes nothing
        assert await repo.outgoing_by_wamid("wamid.first") is None
        found = await repo.outgoing_by_wamid("wamid.template")
        assert found is not None and found.command_id == "cmd-1"
