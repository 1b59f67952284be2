"""``deliver`` over the fake mailer and a real PostgreSQL: retries, rejections, leases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from notifier.config import NotifierConfig
from notifier.delivery import deliver
from notifier.deps import Deps
from notifier.mailer import Email, MailError
from notifier.metrics import Metrics
from notifier.pacing import Pacer
from notifier.repository import PRUNING, Claim
from notifier.settings import Settings
from notifier.texts import Texts
from shared.bus import Bus, Reject, RetryLater
from shared.db import load_migrations, prune
from shared.outbox import Outbox
from shared.profiles import Profiles
from shared.resources import Database
from tests.fakes.notifier import FakeClock, FakeMailer

pytestmark = pytest.mark.integration

EMAIL = Email(
    sender="bot@example.com", to=("a@example.com", "b@example.com"), subject="s", text="t", html="h"
)


@pytest.fixture
async def database(database_url: str, db_schema: str) -> AsyncIterator[Database]:
    database = Database(database_url, db_schema, load_migrations("notifier"), pool_size=4)
    await database.start()
    yield database
    await database.close()


@pytest.fixture
def notifier(database: Database, bus: Bus) -> Deps:
    settings = Settings(
        ERROR_LOG_EMAIL="ops@example.com",
        SES_MAX_ATTEMPTS=3,
        SES_BACKOFF_SECONDS=0.001,
        SES_BACKOFF_MAX_SECONDS=0.002,
        EMAIL_CLAIM_LEASE_SECONDS=30,
        NOTIFIER_TIMEZONE="UTC",
    )
    return Deps(
        config=NotifierConfig.from_settings(settings, Texts(), Profiles()),
        database=database,
        outbox=Outbox(database, bus),
        mailer=FakeMailer(),
        pacer=Pacer(1000),
        metrics=Metrics(CollectorRegistry()),
        clock=FakeClock(),
    )


def fake(n: Deps) -> FakeMailer:
    assert isinstance(n.mailer, FakeMailer)
    return n.mailer


def clock(n: Deps) -> FakeClock:
    assert isinstance(n.clock, FakeClock)
    return n.clock


async def record(n: Deps, key: str = "k1") -> None:
    async with n.repo() as repo:
        await repo.add_email(key=key, kind="error", email=EMAIL, now=n.clock())


async def status(n: Deps, key: str) -> str | None:
    async with n.repo() as repo:
        return await repo.email_status(key)


def throttled() -> MailError:
    return MailError("TooManyRequestsException", "slow down", retryable=True, status_code=429)


async def test_sends_once(notifier: Deps) -> None:
    await record(notifier)
    await deliver(notifier, "k1")
    await deliver(notifier, "k1")
    assert len(fake(notifier).sent) == 1
    assert await status(notifier, "k1") == "sent"


async def test_throttled_past_the_attempts_goes_back_to_pending(notifier: Deps) -> None:
    fake(notifier).failures = [throttled() for _ in range(3)]
    await record(notifier)
    with pytest.raises(RetryLater):
        await deliver(notifier, "k1")
    assert fake(notifier).attempts == 3
    assert await status(notifier, "k1") == "pending"
    await deliver(notifier, "k1")  # the bus's retry
    assert len(fake(notifier).sent) == 1


async def test_rejection_is_final_until_replayed(notifier: Deps) -> None:
    fake(notifier).failures = [MailError("MessageRejected", "no", retryable=False)]
    await record(notifier)
    with pytest.raises(Reject):
        await deliver(notifier, "k1")
    assert fake(notifier).attempts == 1
    assert await status(notifier, "k1") == "failed"
    # An operator replays the dead letter once the identity is fixed: it goes out.
    await deliver(notifier, "k1")
    assert len(fake(notifier).sent) == 1


async def test_an_email_held_by_another_delivery_is_retried_later(notifier: Deps) -> None:
    await record(notifier)
    async with notifier.repo() as repo:
        state, _ = await repo.claim_email("k1", now=notifier.clock(), lease=30)
    assert state == Claim.CLAIMED
    with pytest.raises(RetryLater):
        await deliver(notifier, "k1")
    assert fake(notifier).sent == []
    # The holder died: once its lease runs out, the email is taken over and sent.
    clock(notifier).advance(31)
    await deliver(notifier, "k1")
    assert len(fake(notifier).sent) == 1


async def test_all_recipients_suppressed(notifier: Deps) -> None:
    async with notifier.repo() as repo:
        await repo.suppress(
            ["A@example.com", "b@example.com"], reason="bounce", detail=None, source_event_id="x"
        )
    await record(notifier)
    await deliver(notifier, "k1")
    assert fake(notifier).attempts == 0
    assert await status(notifier, "k1") == "suppressed"


async def test_prune_keeps_recent_and_unfinished(notifier: Deps) -> None:
    # Recorded 31 days ago: one sent, one still pending (RETENTION_DAYS 30).
    clock(notifier).now -= timedelta(days=31)
    await record(notifier, "old")
    await deliver(notifier, "old")
    await record(notifier, "pending")
    emails = await prune(notifier.database.pool, 30, PRUNING)
    assert emails == 1
    assert await status(notifier, "old") is None
    assert await status(notifier, "pending") == "pending"
