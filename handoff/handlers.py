"""Handoff's handler table and background steps: each event (or due timer) runs its use case
once, in one transaction, through the outbox; the metrics count what committed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from handoff import usecases
from handoff.agents import QuoteNotKnownYet
from handoff.config import HandoffConfig
from handoff.metrics import HandoffMetrics
from handoff.outcome import Outcome
from handoff.postgres import PgRepository
from handoff.repository import Repository
from shared import timers
from shared.bus import Delivery, RetryLater
from shared.db import Connection
from shared.events import (
    Event,
    HandoffRequestCommand,
    InboundMessage,
    MessageFailed,
    MessageSent,
)
from shared.handlers import HandlerTable
from shared.logs import fields
from shared.outbox import Outbox
from shared.signals import IdentityChanged, MessageEcho

log = logging.getLogger("mensajero.handoff")

Clock = Callable[[], datetime]
UseCase = Callable[[Repository], Awaitable[Outcome]]
# An agent may quote a message before the sender reported its wamid: the quote is retried this
# many times before it is taken as unknown.
QUOTE_RETRIES = 3


@dataclass(frozen=True)
class Deps:
    """What handoff's handlers need, built by the bootstrap."""

    config: HandoffConfig
    outbox: Outbox
    metrics: HandoffMetrics
    clock: Clock
    repository: Callable[[Connection], Repository] = PgRepository


class UseCaseWork:
    """A use case as the outbox's work, on the transaction's connection; its outcome (the last
    run's, after a conflict) counts in the metrics once it committed."""

    def __init__(self, deps: Deps, use: UseCase) -> None:
        self.deps = deps
        self.use = use
        self.outcome: Outcome | None = None

    async def __call__(self, conn: Connection) -> list[Event]:
        self.outcome = await self.use(self.deps.repository(conn))
        return self.outcome.events

    def committed(self) -> Outcome:
        assert self.outcome is not None
        self.deps.metrics.apply(self.outcome.facts)
        return self.outcome


async def run_use_case(deps: Deps, source_id: str, use: UseCase) -> Outcome | None:
    """``use`` once per ``source_id`` (None: it ran before)."""
    work = UseCaseWork(deps, use)
    if not await deps.outbox.handle_once(source_id, work):
        return None
    return work.committed()


# ------------------------------------------------------------------ the queue


async def on_inbound(deps: Deps, msg: InboundMessage, delivery: Delivery) -> None:
    patient = delivery.attempt <= QUOTE_RETRIES

    async def use(repo: Repository) -> Outcome:
        now = deps.clock()
        return await usecases.on_inbound(deps.config, repo, msg, now=now, wait_for_quotes=patient)

    try:
        outcome = await run_use_case(deps, msg.event_id, use)
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


async def on_request(deps: Deps, command: HandoffRequestCommand, delivery: Delivery) -> None:
    async def use(repo: Repository) -> Outcome:
        return await usecases.on_request(deps.config, repo, command, now=deps.clock())

    await run_use_case(deps, command.event_id, use)


async def on_echo(deps: Deps, echo: MessageEcho, delivery: Delivery) -> None:
    async def use(repo: Repository) -> Outcome:
        return await usecases.on_echo(deps.config, repo, echo, now=deps.clock())

    await run_use_case(deps, echo.event_id, use)


async def on_identity_changed(deps: Deps, change: IdentityChanged, delivery: Delivery) -> None:
    async def use(repo: Repository) -> Outcome:
        return await usecases.on_identity_changed(deps.config, repo, change, now=deps.clock())

    await run_use_case(deps, change.event_id, use)


async def on_failed(deps: Deps, failed: MessageFailed, delivery: Delivery) -> None:
    async def use(repo: Repository) -> Outcome:
        return await usecases.on_failed(deps.config, repo, failed, now=deps.clock())

    await run_use_case(deps, failed.event_id, use)


async def on_sent(deps: Deps, sent: MessageSent, delivery: Delivery) -> None:
    # Idempotent by itself (the wamid is set, or left): no inbox record needed.
    async with deps.outbox.database.pool.acquire() as conn:
        await usecases.on_sent(deps.repository(conn), sent)


def customer_key(msg: InboundMessage) -> str:
    """One person's messages run one after another, in arrival order: the sender's
    ``ordering_key``, customer or agent (an agent's messages in their order; which case they
    go to is only known once read, so keying them by case is not possible before)."""
    return msg.partition_key()


def requested_key(command: HandoffRequestCommand) -> str:
    return command.partition_key()


# Partitioned by customer (shared.bus): ``HANDOFF_PARTITIONS`` queues behind a consistent-hash
# exchange on the publisher's ``x-mensajero-key`` header, the same key as below. Each partition
# has one active consumer across replicas, so a customer's events are handled in the order they
# arrived while replicas share the partitions (shared.partitions).
TABLE: HandlerTable[Deps] = HandlerTable("handoff", single_active_consumer=True)
TABLE.on(InboundMessage, on_inbound, key=customer_key)
TABLE.on(MessageSent, on_sent)
TABLE.on(MessageFailed, on_failed)
TABLE.on(HandoffRequestCommand, on_request, key=requested_key)
TABLE.on(MessageEcho, on_echo, key=lambda echo: echo.partition_key())
TABLE.on(IdentityChanged, on_identity_changed, key=lambda change: change.partition_key())


# ------------------------------------------------------------------ background


async def fire_due_timers(deps: Deps) -> int:
    """Fire the timers due now (once across replicas); how many fired here."""
    works: dict[int, UseCaseWork] = {}

    async def effect(conn: Connection, timer: timers.Timer) -> list[Event]:
        async def use(repo: Repository) -> Outcome:
            return await usecases.on_timer(deps.config, repo, timer, now=deps.clock())

        return await works.setdefault(timer.id, UseCaseWork(deps, use))(conn)

    fired = await timers.fire_due(deps.outbox, deps.clock(), effect)
    for timer in fired:
        works[timer.id].committed()
        deps.metrics.timers_fired.labels(timer.kind).inc()
        log.info("timer fired", extra=fields(case=timer.subject, kind=timer.kind))
    return len(fired)


async def refresh_gauges(deps: Deps) -> None:
    """Cases waiting and active now (every replica reports the same totals)."""
    async with deps.outbox.database.pool.acquire() as conn:
        deps.metrics.set_counts(await deps.repository(conn).counts())
