"""Bus handlers: each event runs its use case once, in one transaction, through the outbox."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg

from handoff.metrics import HandoffMetrics
from handoff.repository import ConcurrentUpdate, PgRepository, Repository
from handoff.service import Handoff, Outcome, QuoteNotKnownYet
from shared.bus import Bus, Delivery, RetryLater
from shared.db import Connection, Pool
from shared.events import (
    Event,
    HandoffRequestCommand,
    InboundMessage,
    MessageFailed,
    MessageSent,
)
from shared.logs import fields
from shared.outbox import handle_once
from shared.phone import maybe_e164

log = logging.getLogger("mensajero.handoff")

CONFLICT_RETRIES = 8
# A version conflict, or PostgreSQL aborting one of two transactions that locked the same rows
# in opposite orders (a claim against a firing timer): run the whole use case again.
RETRYABLE = (
    ConcurrentUpdate,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
QUOTE_RETRIES = 3
Use = Callable[[Repository], Awaitable[Outcome]]


async def run_once(
    pool: Pool, bus: Bus, source_id: str, use: Use, metrics: HandoffMetrics | None = None
) -> Outcome | None:
    """Run ``use`` once per ``source_id`` (inbox + outbox); rerun it on a version conflict."""
    result: list[Outcome] = []

    async def work(conn: Connection) -> list[Event]:
        outcome = await use(PgRepository(conn))
        result.append(outcome)
        return outcome.events

    for attempt in range(1, CONFLICT_RETRIES + 1):
        result.clear()

        try:
            ran = await handle_once(pool, bus, source_id, work)
        except RETRYABLE as conflict:
            log.info(
                "concurrent update, running again",
                extra=fields(source_id=source_id, attempt=attempt, reason=str(conflict)),
            )
            continue
        if not ran:
            return None
        outcome = result[-1]
        if metrics is not None:
            metrics.apply(outcome.facts)
        return outcome
    raise RetryLater(f"{source_id}: still conflicting after {CONFLICT_RETRIES} attempts", 1.0)


def message_key(event: Event) -> str | None:
    """Messages of one person run one after another, in arrival order."""
    if isinstance(event, InboundMessage):
        return maybe_e164(event.sender.phone) or event.sender.key
    if isinstance(event, HandoffRequestCommand):
        return maybe_e164(event.customer_phone) or event.customer_phone
    return None


class Handlers:
    def __init__(self, pool: Pool, bus: Bus, core: Handoff, metrics: HandoffMetrics) -> None:
        self.pool = pool
        self.bus = bus
        self.core = core
        self.metrics = metrics

    async def __call__(self, event: Event, delivery: Delivery) -> None:
        if isinstance(event, InboundMessage):
            await self.inbound(event, delivery)
        elif isinstance(event, MessageSent):
            await self.sent(event)
        elif isinstance(event, MessageFailed):
            await self.failed(event)
        elif isinstance(event, HandoffRequestCommand):
            await self.request(event)

    async def inbound(self, msg: InboundMessage, delivery: Delivery | None = None) -> None:
        # An agent may quote a message before the sender reported its wamid: retry a few
        # times before treating the quote as unknown.
        patient = delivery is not None and delivery.attempt <= QUOTE_RETRIES

        async def use(repo: Repository) -> Outcome:
            return await self.core.on_inbound(repo, msg, wait_for_quotes=patient)

        try:
            outcome = await run_once(self.pool, self.bus, msg.event_id, use, self.metrics)
        except QuoteNotKnownYet as error:
            raise RetryLater(f"quoted message {error} not mapped yet", 1.0) from error
        log.info(
            "inbound handled",
            extra=fields(
                event_id=msg.event_id,
                wamid=msg.wamid,
                duplicate=outcome is None,
                published=len(outcome.events) if outcome else 0,
            ),
        )

    async def request(self, command: HandoffRequestCommand) -> None:
        async def use(repo: Repository) -> Outcome:
            return await self.core.on_request(repo, command)

        await run_once(self.pool, self.bus, command.event_id, use, self.metrics)

    async def failed(self, failed: MessageFailed) -> None:
        async def use(repo: Repository) -> Outcome:
            return await self.core.on_failed(repo, failed)

        await run_once(self.pool, self.bus, failed.event_id, use, self.metrics)

    async def sent(self, sent: MessageSent) -> None:
        async with self.pool.acquire() as conn:
            await self.core.on_sent(PgRepository(conn), sent)
