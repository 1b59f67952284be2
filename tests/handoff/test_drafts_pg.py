"""Answering is enough on PostgreSQL (issue 15): the first of many concurrent plain answers wins
the one waiting case; drafts are kept once, in order, and taken by a choice or an expiry, not
both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from handoff import usecases
from handoff.config import HandoffConfig
from handoff.outcome import Outcome
from handoff.postgres import PgRepository
from handoff.repository import Draft, Repository
from shared.db import Pool, load_migrations
from shared.events import HandoffClaimed, HandoffRequested, SendMessage
from shared.profiles import Profiles
from shared.resources import Database
from tests.fakes.handoff import FakeRepository
from tests.handoff.support import CUSTOMER, body, inbound
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
AGENTS = [f"+5491100000{n:03d}" for n in range(10)]
CONFIG = HandoffConfig(Profiles(), AGENTS, 600, 3600)


@pytest.fixture
async def pool(database_url: str, db_schema: str) -> AsyncIterator[Pool]:
    database = Database(database_url, db_schema, load_migrations("handoff"), pool_size=12)
    await database.start()
    yield database.pool
    await database.close()


async def handled(pool: Pool, phone: str, text: str) -> Outcome:
    """One inbound message's use case in its own transaction, as the handler runs it."""
    async with pool.acquire() as conn, conn.transaction():
        msg = inbound(phone, text, name="Agente" if phone in AGENTS else "Juan Pérez", at=NOW)
        return await usecases.on_inbound(CONFIG, PgRepository(conn), msg, now=NOW)


def sends(outcome: Outcome, to: str) -> list[str]:
    return [body(e) for e in outcome.events if isinstance(e, SendMessage) and e.to == to]


async def test_of_ten_agents_answering_the_one_waiting_case_at_once_one_wins(pool: Pool) -> None:
    opened = await handled(pool, CUSTOMER, "quiero hablar con un humano")
    [requested] = [e for e in opened.events if isinstance(e, HandoffRequested)]
    outcomes = await asyncio.gather(*(handled(pool, a, f"Hola, soy {a}") for a in AGENTS))
    winners = [
        (agent, outcome)
        for agent, outcome in zip(AGENTS, outcomes, strict=True)
        if any(isinstance(e, HandoffClaimed) for e in outcome.events)
    ]
    assert len(winners) == 1
    [(winner, won)] = winners
    assert sends(won, CUSTOMER) == [f"Hola, soy {winner}"]
    for agent, outcome in zip(AGENTS, outcomes, strict=True):
        if agent == winner:
            continue
        assert sends(outcome, CUSTOMER) == []  # a loser's words never reach the customer...
        assert any("no lo envié" in text for text in sends(outcome, agent))  # ...and they know
    async with pool.acquire() as conn:
        case = await PgRepository(conn).get_case(requested.case_code)
        kept = await conn.fetchval("SELECT count(*) FROM drafts")
    assert case is not None and case.state == "active" and case.agent == winner
    assert kept == 0


def draft(agent: str, text: str, wamid: str) -> Draft:
    return Draft(agent, inbound(agent, text, wamid=wamid, at=NOW), text, NOW)


async def test_drafts_are_kept_once_in_order_and_taken_as_the_fake_does(pool: Pool) -> None:
    written = [
        draft(AGENTS[0], "uno", "wamid.1"),
        draft(AGENTS[1], "de otro", "wamid.2"),
        draft(AGENTS[0], "dos", "wamid.3"),
        draft(AGENTS[0], "uno otra vez", "wamid.1"),  # a redelivery: kept once
    ]
    async with pool.acquire() as conn:
        repos: list[Repository] = [PgRepository(conn), FakeRepository()]
        for repo in repos:
            for one in written:
                await repo.keep_draft(one)
        kept = [[d.text for d in await repo.drafts_of(AGENTS[0])] for repo in repos]
        taken = [await repo.take_drafts(AGENTS[0]) for repo in repos]
        left = [[d.text for d in await repo.drafts_of(AGENTS[0])] for repo in repos]
        others = [[d.text for d in await repo.drafts_of(AGENTS[1])] for repo in repos]
    assert kept == [["uno", "dos"]] * 2 and left == [[], []] and others == [["de otro"]] * 2
    assert taken[0] == taken[1] == [written[0], written[2]]


async def test_a_choice_holding_the_drafts_leaves_nothing_for_an_expiry_at_once(
    pool: Pool,
) -> None:
    async with pool.acquire() as conn:
        await PgRepository(conn).keep_draft(draft(AGENTS[0], "hola", "wamid.9"))
    locked = asyncio.Event()
    expiring: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def blocked(pid: int) -> bool:
        """The expiry's statement waits for a lock (the choice's)."""
        async with pool.acquire() as conn:
            state = await conn.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
            )
        return bool(state == "Lock")

    async def choice() -> list[Draft]:
        async with pool.acquire() as conn, conn.transaction():
            repo = PgRepository(conn)
            held = await repo.drafts_of(AGENTS[0])
            locked.set()
            pid = await expiring
            await wait_for(lambda: blocked(pid), message="the expiry waiting for the choice")
            await repo.take_drafts(AGENTS[0])
            return held

    async def expiry() -> list[Draft]:
        await locked.wait()
        async with pool.acquire() as conn, conn.transaction():
            expiring.set_result(conn.get_server_pid())
            return await PgRepository(conn).take_drafts(AGENTS[0])

    chosen, expired = await asyncio.gather(choice(), expiry())
    assert [d.text for d in chosen] == ["hola"] and expired == []
