"""The PostgreSQL store and the outbox relay on a real database and broker: the acceptance and
its result event written together, connections kept for the batched statements, relay batches;
a claim whose try was cancelled meanwhile given back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from sender.pacing import Pacers
from sender.pg_store import PostgresStore
from sender.sending import handle_send
from sender.store import PRUNING, NewMessage, TemplateUpdate
from shared.batching import HeldConnections
from shared.bus import Bus, Delivery, QueueSpec
from shared.db import Pool, load_migrations, prune
from shared.events import Event, MessageSent, parse_event, stable_id
from shared.outbox import Outbox
from shared.resources import Database
from tests.helpers import wait_for
from tests.sender.fakes import World, text

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(database_url: str, db_schema: str) -> AsyncIterator[Database]:
    database = Database(database_url, db_schema, load_migrations("sender"), pool_size=4)
    await database.start()
    yield database
    await asyncio.wait_for(database.close(), 10)  # hangs if a held connection was not given back


@pytest.fixture
def pool(database: Database) -> Pool:
    return database.pool


@pytest.fixture
async def held(pool: Pool) -> AsyncIterator[HeldConnections]:
    held = HeldConnections(pool)
    yield held
    await held.close()


def message(n: int) -> NewMessage:
    return NewMessage(
        command_id=f"cmd-{n}",
        phone_number_id="100000000000001",
        recipient=f"+54911000000{n:02d}",
        kind="text",
        command_json="{}",
        valid_until=datetime.now(UTC) + timedelta(hours=1),
    )


def sent(n: int) -> MessageSent:
    return MessageSent(
        event_id=stable_id(f"cmd-{n}", "accepted"),
        command_id=f"cmd-{n}",
        wamid=f"wamid.{n}",
        to=f"+54911000000{n:02d}",
        phone_number_id="100000000000001",
        kind="text",
    )


async def test_acceptance_and_its_result_are_written_in_one_statement(
    database: Database, pool: Pool, held: HeldConnections
) -> None:
    written: list[int] = []
    store = PostgresStore(database, held=held, outbox_written=lambda: written.append(1))
    for n in range(3):
        claim = await store.claim(message(n), 30.0)
        assert claim.outcome == "claimed"
    await asyncio.gather(
        store.accepted("cmd-0", "wamid.0", sent(0)),
        store.accepted("cmd-1", "wamid.1", sent(1)),
        store.accepted("cmd-2", None, None),  # a read receipt: no result event
    )
    rows = {r["command_id"]: r for r in await pool.fetch("SELECT * FROM messages")}
    assert [rows[f"cmd-{n}"]["status"] for n in range(3)] == ["accepted"] * 3
    assert rows["cmd-0"]["wamid"] == "wamid.0" and rows["cmd-2"]["wamid"] is None
    outbox = await pool.fetch("SELECT event_id, event_type, body FROM outbox ORDER BY id")
    assert [r["event_id"] for r in outbox] == [sent(0).event_id, sent(1).event_id]
    event = parse_event(outbox[0]["event_type"], bytes(outbox[0]["body"]))
    assert isinstance(event, MessageSent) and event.wamid == "wamid.0"
    assert written  # the relay was woken
    # The same result again (a redelivered command) is not a second row.
    await store.accepted("cmd-0", "wamid.0", sent(0))
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 2


async def test_held_connections_are_reused_and_given_back(pool: Pool) -> None:
    held = HeldConnections(pool, keep=1)
    async with held.connection() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
    async with held.connection() as conn:  # the same one, not back through the pool
        assert await conn.fetchval("SELECT pg_backend_pid()") == pid
    with pytest.raises(Exception, match="division by zero"):
        async with held.connection() as conn:
            await conn.execute("SELECT 1 / 0")
    # A failed statement's connection went back to the pool (reset there): none held now.
    async with held.connection() as conn:
        assert await conn.fetchval("SELECT 1") == 1
    await held.close()
    async with held.connection() as conn:  # after close: borrowed and given back at once
        await conn.fetchval("SELECT 1")
    # The pool fixture's close() would hang if any connection were still out.


async def test_relay_publishes_rows_written_together_in_one_transaction(
    database: Database, pool: Pool, bus: Bus
) -> None:
    received: list[Event] = []

    async def collect(event: Event, delivery: Delivery) -> None:
        received.append(event)

    await bus.consume(QueueSpec("observer", [MessageSent.TYPE], retry_tiers_ms=(100,)), collect)
    # A long gathering time, so that the test does not depend on how fast the inserts go, and
    # no polling pass while it runs.
    relay = Outbox(database, bus, gather_seconds=0.5, idle_seconds=60)
    await relay.start()
    try:
        await relay.publish(sent(99))  # the workers are past their start-up pass once it is out
        await wait_for(lambda: len(received) == 1, timeout=10, message="the first event")
        before = relay.transactions
        await asyncio.gather(*(relay.publish(sent(n)) for n in range(20)))
        await wait_for(lambda: len(received) == 21, timeout=10, message="20 more events")
        expected = sorted(sent(n).event_id for n in [*range(20), 99])
        assert sorted(e.event_id for e in received) == expected
        assert relay.transactions == before + 1
        left = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        assert left == 0
    finally:
        await relay.close()


async def test_retention_deletes_only_settled_old_log_rows(pool: Pool) -> None:
    await pool.execute(
        "INSERT INTO messages (command_id, phone_number_id, recipient, kind, command, status,"
        " status_rank, valid_until, updated_at) VALUES"
        " ('old', 'n', '+1', 'text', '{}', 'read', 5, now() - interval '40 days',"
        "  now() - interval '40 days'),"
        " ('recent', 'n', '+1', 'text', '{}', 'read', 5, now() - interval '40 days', now()),"
        # Still valid (a long validity): its command may yet be redelivered.
        " ('valid', 'n', '+1', 'text', '{}', 'pending', 0, now() + interval '1 day',"
        "  now() - interval '40 days')"
    )
    await pool.execute(
        "INSERT INTO superseded_wamids (wamid, command_id, at) VALUES"
        " ('wamid.old', 'old', now() - interval '40 days'), ('wamid.new', 'recent', now())"
    )
    await pool.execute(
        "INSERT INTO recipient_backoff (phone_number_id, recipient, until) VALUES"
        " ('n', '+1', now() - interval '40 days'), ('n', '+2', now() + interval '1 minute')"
    )
    assert await prune(pool, 30, PRUNING) == 3
    assert {r["command_id"] for r in await pool.fetch("SELECT command_id FROM messages")} == {
        "recent",
        "valid",
    }
    assert await pool.fetchval("SELECT array_agg(wamid) FROM superseded_wamids") == ["wamid.new"]
    assert await pool.fetchval("SELECT array_agg(recipient) FROM recipient_backoff") == ["+2"]


async def test_connections_lost_with_the_server_are_replaced_without_failing_a_statement(
    database: Database, pool: Pool, held: HeldConnections, database_url: str, db_schema: str
) -> None:
    store = PostgresStore(database, held=held)
    # Fill the kept connections: concurrent claims each take one.
    claims = await asyncio.gather(*(store.claim(message(n), 30.0) for n in range(3)))
    assert {c.outcome for c in claims} == {"claimed"}
    assert held._free
    # As in a PostgreSQL restart: the server ends every connection of this service.
    killer = await asyncpg.connect(database_url)
    try:
        ended = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            f"mensajero-{db_schema}",
        )
    finally:
        await killer.close()
    assert ended >= 1
    # The next statements find the kept connections gone and use fresh ones: none fails.
    for n in range(3, 9):
        assert (await store.claim(message(n), 30.0)).outcome == "claimed"
    await asyncio.gather(*(store.accepted(f"cmd-{n}", f"wamid.{n}", sent(n)) for n in range(9)))
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE status = 'accepted'") == 9


async def test_identifiers_of_one_customer_share_its_key_and_its_latest_preference(
    database: Database, pool: Pool
) -> None:
    store = PostgresStore(database)
    assert await store.link_customer(["+5491100000001", "AR.1"]) == "+5491100000001"
    assert await store.link_customer(["+5491100000002", "AR.2"]) == "+5491100000002"
    # A change of number shows the two were one person: merged under one key.
    merged = await store.link_customer(["AR.2", "+5491100000001"])
    keys = await pool.fetch(
        "SELECT customer_of(i) AS c FROM unnest($1::text[]) AS i",
        ["+5491100000001", "AR.1", "+5491100000002", "AR.2"],
    )
    assert {r["c"] for r in keys} == {merged}
    assert await pool.fetchval("SELECT customer_of('+5491199999999')") == "+5491199999999"

    async def stopped(identifier: str) -> bool:
        return bool(await pool.fetchval("SELECT marketing_stopped($1)", identifier))

    now = datetime.now(UTC)
    await store.set_marketing(["AR.1"], stopped=True, at=now, source="test")
    assert await stopped("+5491100000002")  # another identifier of the same customer
    await store.set_marketing(["AR.2"], stopped=False, at=now - timedelta(hours=1), source="t")
    assert await stopped("AR.2")  # the latest, whichever identifier it came under
    await store.set_marketing(["AR.2"], stopped=False, at=now + timedelta(seconds=1), source="t")
    assert not await stopped("AR.1")
    await store.set_marketing(["AR.2"], stopped=True, at=now - timedelta(hours=2), source="t")
    assert not await stopped("AR.1")  # an older stop does not undo the resume


async def test_the_claim_reads_backoff_preference_and_hold_by_customer(database: Database) -> None:
    store = PostgresStore(database)
    await store.link_customer(["+5491100000001", "AR.1"])
    await store.backoff_recipient("100000000000001", "AR.1", 30.0, 300.0)
    await store.set_marketing(["AR.1"], stopped=True, at=datetime.now(UTC), source="test")
    marketing = replace(message(1), marketing=True)
    claim = await store.claim(marketing, 30.0)
    assert claim.customer == "+5491100000001" and claim.backoff_left > 20
    assert claim.marketing_stopped and claim.not_before is None
    later = datetime.now(UTC) + timedelta(hours=24)
    await store.release(marketing.command_id, "withheld", None, not_before=later)
    again = await store.claim(marketing, 30.0)
    assert again.not_before == later and again.attempts == 2
    plain = await store.claim(message(2), 30.0)  # not marketing: the preference is not read
    assert not plain.marketing_stopped and plain.customer == "+5491100000002"
    await store.close()  # the connections it kept for the claims


async def test_template_states_keep_the_latest_of_each_attribute(database: Database) -> None:
    store = PostgresStore(database)
    now = datetime.now(UTC)

    def update(**said: Any) -> TemplateUpdate:
        values = {"name": "aviso", "language": "es_AR", "template_id": "77", "at": now, **said}
        return TemplateUpdate(**values)

    assert await store.save_template(update(status="PAUSED", category="UTILITY"))
    assert await store.save_template(update(status="APPROVED", at=now - timedelta(minutes=1)))
    assert await store.save_template(update(name=None, language=None, quality="RED"))  # by id
    assert not await store.save_template(update(name=None, language=None, template_id="88"))
    soon = now + timedelta(days=1)
    assert await store.save_template(update(next_category="MARKETING", next_category_at=soon))
    [state] = await store.templates(now)
    assert (state.status, state.category, state.quality) == ("PAUSED", "UTILITY", "RED")
    [later] = await store.templates(soon + timedelta(seconds=1))
    assert later.category == "MARKETING"


async def test_each_kind_of_circuit_opens_once_per_incident(database: Database) -> None:
    store = PostgresStore(database)
    number = "100000000000001"
    assert await store.open_circuit(number, "190", "token") == 1
    assert await store.open_circuit(number, "131042", "payment") == 1
    assert await store.open_circuit(number, "131042", "payment") is None  # open already
    assert sorted(await store.open_circuits()) == [(number, "payment"), (number, "token")]
    assert await store.close_circuit(number, "payment")
    assert await store.open_circuits() == [(number, "token")]
    assert await store.open_circuit(number, "131044", "payment") == 2


async def test_two_statuses_of_one_lost_answer_adopt_it_once_and_are_no_duplicate(
    database: Database, pool: Pool, held: HeldConnections
) -> None:
    """Meta's sent and delivered for a send whose answer was lost, handled at once: the first
    adopts the wamid; the second finds it the command's already (not a second acceptance)."""
    store = PostgresStore(database, held=held)
    assert (await store.claim(message(7), 30.0)).outcome == "claimed"
    first, second = await asyncio.gather(
        store.adopt_sent("wamid.lost", "cmd-7"), store.adopt_sent("wamid.lost", "cmd-7")
    )
    assert sorted([first.outcome, second.outcome]) == ["adopted", "known"]
    assert await pool.fetchval("SELECT count(*) FROM superseded_wamids") == 0
    # Another wamid for the same command is still a duplicate.
    assert (await store.adopt_sent("wamid.again", "cmd-7")).outcome == "duplicate"


async def test_a_try_cancelled_while_its_claim_waits_in_postgresql_gives_the_row_back(
    database: Database, pool: Pool
) -> None:
    """The broker connection goes while the claim's statement waits in PostgreSQL (here behind a
    table lock): the statement still takes the row, and the cancelled try gives it back, so the
    redelivery sends at once instead of waiting for the lease."""
    store = PostgresStore(database)
    w = World()
    w.deps = replace(w.deps, store=store, pacers=Pacers(store, lambda _n: 1000.0, 0.05))
    try:
        command = text("hola")
        async with pool.acquire() as blocker:
            locked = blocker.transaction()
            await locked.start()
            await blocker.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
            task = asyncio.create_task(handle_send(w.deps, command))
            await wait_for(
                lambda: _claim_waits_for_a_lock(pool),
                timeout=10,
                message="the claim to wait for the lock",
            )
            task.cancel()
            await locked.commit()
        with pytest.raises(asyncio.CancelledError):
            await task
        row = await store.get(command.event_id)
        assert row is not None and (row.status, row.attempts) == ("pending", 1)
        await handle_send(w.deps, command)  # the redelivery
        assert len(w.graph.sent) == 1
        row = await store.get(command.event_id)
        assert row is not None and (row.status, row.attempts) == ("accepted", 2)
    finally:
        await w.deps.pacers.close()
        await store.close()


async def _claim_waits_for_a_lock(pool: Pool) -> bool:
    waiting = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO messages%'"
    )
    return bool(waiting)
