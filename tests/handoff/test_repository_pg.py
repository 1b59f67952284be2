"""The PostgreSQL adapter under concurrency: atomic claims, one open case, timers fired once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from handoff.config import HandoffConfig
from handoff.handlers import TABLE, Deps, fire_due_timers
from handoff.metrics import HandoffMetrics
from handoff.postgres import PgRepository
from handoff.repository import Agent, Case, ConcurrentUpdate, Conversation, SendRecord, Transfer
from shared import timers
from shared.bus import Bus
from shared.db import Pool, load_migrations
from shared.events import MessageSent
from shared.outbox import Outbox
from shared.profiles import Profiles
from shared.resources import Database
from tests.fakes.handoff import FakeRepository
from tests.handoff.support import AGENT, CUSTOMER, Core, drop_handoff_queue

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


CONFIG = HandoffConfig(Profiles(), [AGENT], 600, 3600)


@pytest.fixture
async def database(database_url: str, db_schema: str) -> AsyncIterator[Database]:
    database = Database(database_url, db_schema, load_migrations("handoff"), pool_size=12)
    await database.start()
    yield database
    await database.close()


@pytest.fixture
def pool(database: Database) -> Pool:
    return database.pool


def deps_on(database: Database, bus: Bus) -> Deps:
    """A replica's handlers on ``database`` (its own pool)."""
    return Deps(
        config=CONFIG,
        outbox=Outbox(database, bus, conflicts=(ConcurrentUpdate,)),
        metrics=HandoffMetrics(CollectorRegistry()),
        clock=lambda: NOW,
    )


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
    database: Database, pool: Pool, database_url: str, db_schema: str, bus: Bus
) -> None:
    from shared.bus import QueueSpec

    queue_spec = TABLE.spec

    # Something must be bound to whatsapp.send.requested for the publishes to be routable.
    await bus.declare_service_queue(QueueSpec("sink", ["#"], retry_tiers_ms=(100,)))
    codes = [f"T{i}" for i in range(12)]
    for index, code in enumerate(codes):
        await seed_case(pool, code, customer=f"+54911555500{index:02d}")
        async with pool.acquire() as conn:
            await PgRepository(conn).schedule(code, "queue", NOW - timedelta(seconds=1))
    other = Database(database_url, db_schema, load_migrations("handoff"), pool_size=4)
    await other.start()
    replicas = [deps_on(database, bus), deps_on(other, bus)]
    try:
        fired = await asyncio.gather(*(fire_due_timers(d) for d in replicas + replicas))
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
    core = Core(CONFIG, clock=lambda: NOW)
    async with pool.acquire() as conn:
        repo = PgRepository(conn)
        await repo.add_outgoing(SendRecord("cmd-1", "W1", CUSTOMER, "customer", None))
        for sent in [fallback, first] if fallback_first else [first, fallback]:
            await core.on_sent(repo, sent)
        await core.on_sent(repo, first)  # a replay of the first changes nothing
        assert await repo.outgoing_by_wamid("wamid.first") is None
        found = await repo.outgoing_by_wamid("wamid.template")
        assert found is not None and found.command_id == "cmd-1"


async def test_timers_of_a_schema_from_before_the_shared_timers_keep_their_cases(
    database_url: str, db_schema: str
) -> None:
    """A deployment that ran 0001 alone: 0002 gives its timers the shared shape, rows kept."""
    first, *later = load_migrations("handoff")
    early = Database(database_url, db_schema, [first])
    await early.start()
    try:
        await early.pool.execute(
            "INSERT INTO timers (case_code, kind, due_at) VALUES ('K1', 'queue', $1)", NOW
        )
    finally:
        await early.close()
    upgraded = Database(database_url, db_schema, [first, *later])
    await upgraded.start()
    try:
        [timer] = await timers.due(upgraded.pool, NOW)
        assert (timer.subject, timer.kind, timer.due_at) == ("K1", "queue", NOW)
    finally:
        await upgraded.close()


async def test_identifiers_find_link_and_retire_as_the_fake_does(pool: Pool) -> None:
    """The same answers from PostgreSQL and from the in-memory fake the unit tests use."""
    later = NOW + timedelta(hours=1)
    async with pool.acquire() as conn, conn.transaction():
        for repo in (PgRepository(conn), FakeRepository()):
            for key in ("K1", "K2"):
                await repo.add_conversation(Conversation(key, None, None, None, "1", "default"))
            await repo.link_identifiers("K1", ["AR.1", "+5491155550001"])
            await repo.link_identifiers("K2", ["+5491155550001", "AR.2"])  # the phone stays K1's
            found = await repo.find_conversation(["+5491155550001"], NOW)
            assert found is not None and found.customer == "K1"
            assert await repo.identifiers_of("K2") == {"AR.2": None}

            await repo.retire_identifiers("K1", ["+5491155550001"], NOW)
            before = await repo.find_conversation(["AR.9", "+5491155550001"], NOW)
            assert before is not None and before.customer == "K1"  # sent before: in flight
            assert await repo.find_conversation(["+5491155550001"], later) is None
            await repo.link_identifiers("K2", ["+5491155550001"])  # a retired one is free
            after = await repo.find_conversation(["+5491155550001"], later)
            assert after is not None and after.customer == "K2"

            await repo.link_identifiers("K1", ["AR.2"])  # someone else's: left alone
            assert (await repo.identifiers_of("K2"))["AR.2"] is None
            await repo.link_identifiers("K1", ["AR.2"], take=True)  # an identity change
            assert await repo.identifiers_of("K1") == {"AR.1": None, "AR.2": None}


async def test_conversations_of_a_schema_from_before_keep_their_identifiers(
    database_url: str, db_schema: str
) -> None:
    """A deployment from before 0003: its conversations are found by key, phone and BSUID."""
    migrations = load_migrations("handoff")
    early = Database(database_url, db_schema, migrations[:2])
    await early.start()
    try:
        await early.pool.execute(
            "INSERT INTO conversations (customer, phone, user_id, phone_number_id, profile_id)"
            " VALUES ($1, $1, 'AR.7', '1', 'default')",
            CUSTOMER,
        )
    finally:
        await early.close()
    upgraded = Database(database_url, db_schema, migrations)
    await upgraded.start()
    try:
        async with upgraded.pool.acquire() as conn:
            repo = PgRepository(conn)
            for identifier in (CUSTOMER, "AR.7"):
                found = await repo.find_conversation([identifier], NOW)
                assert found is not None and found.customer == CUSTOMER
    finally:
        await upgraded.close()


async def test_an_offer_is_taken_once_and_a_rating_settles_once(pool: Pool) -> None:
    await seed_case(pool, "OF1")
    async with pool.acquire() as conn:
        repo = PgRepository(conn)
        assert await repo.offer_reply("OF1", AGENT, NOW)
        assert not await repo.offer_reply("OF1", AGENT, NOW)  # offered already
        await repo.offer_rating("OF1")

    async def take() -> str | None:
        async with pool.acquire() as conn, conn.transaction():
            return await PgRepository(conn).take_offer("OF1")

    async def settle(score: int) -> bool:
        async with pool.acquire() as conn, conn.transaction():
            return await PgRepository(conn).settle_rating("OF1", "rated", score)

    taken = await asyncio.gather(*(take() for _ in range(6)))
    assert taken.count(AGENT) == 1 and taken.count(None) == 5
    settled = await asyncio.gather(*(settle(score) for score in (1, 2, 3, 1, 2, 3)))
    assert settled.count(True) == 1
    async with pool.acquire() as conn:
        repo = PgRepository(conn)
        rating = await repo.rating_of("OF1")
        assert rating is not None and rating.state == "rated" and rating.score in (1, 2, 3)
        assert not await repo.settle_rating("OF1", "expired", None)


async def test_agents_pause_and_transfers_are_kept(pool: Pool) -> None:
    async with pool.acquire() as conn:
        repo = PgRepository(conn)
        await repo.save_agent(Agent(AGENT, NOW, "K7F", paused=True))
        assert (await repo.get_agent(AGENT)).paused
        await repo.add_transfer(Transfer("K7F", AGENT, "+5491100000002", NOW, "transfer"))
        await repo.add_transfer(Transfer("K7F", "+5491100000002", AGENT, NOW, "reply_timeout"))
        moves = await repo.transfers("K7F")
    assert [(m.from_agent, m.reason) for m in moves] == [
        (AGENT, "transfer"),
        ("+5491100000002", "reply_timeout"),
    ]
