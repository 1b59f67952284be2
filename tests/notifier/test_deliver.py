"""``deliver`` over the fake mailer and a real PostgreSQL: retries, rejections, leases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from notifier import repository as repo
from notifier.handlers import Notifier, deliver
from notifier.mailer import Email, FakeMailer, MailError
from notifier.metrics import Metrics
from notifier.pacing import Pacer
from notifier.settings import Settings
from notifier.templates import Texts, zone
from shared.bus import Bus, Reject, RetryLater
from shared.db import Pool, create_pool, load_migrations, migrate
from shared.profiles import Profiles
from tests.notifier.conftest import FakeClock

pytestmark = pytest.mark.integration

EMAIL = Email(
    sender="bot@example.com", to=("a@example.com", "b@example.com"), subject="s", text="t", html="h"
)


@pytest.fixture
async def pool(database_url: str, db_schema: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, db_schema, max_size=4)
    await migrate(pool, db_schema, load_migrations("notifier"))
    yield pool
    await pool.close()


@pytest.fixture
def notifier(pool: Pool, bus: Bus) -> Notifier:
    settings = Settings(
        ERROR_LOG_EMAIL="ops@example.com",
        SES_MAX_ATTEMPTS=3,
        SES_BACKOFF_SECONDS=0.001,
        SES_BACKOFF_MAX_SECONDS=0.002,
        EMAIL_CLAIM_LEASE_SECONDS=30,
    )
    return Notifier(
        settings=settings,
        pool=pool,
        bus=bus,
        mailer=FakeMailer(),
        pacer=Pacer(1000),
        metrics=Metrics(CollectorRegistry()),
        texts=Texts(),
        profiles=Profiles(),
        tz=zone("UTC"),
        clock=FakeClock(),
    )


def fake(n: Notifier) -> FakeMailer:
    assert isinstance(n.mailer, FakeMailer)
    return n.mailer


async def record(n: Notifier, key: str = "k1") -> None:
    async with n.pool.acquire() as conn:
        await repo.add_email(conn, key=key, kind="error", email=EMAIL, now=n.clock())


def throttled() -> MailError:
    return MailError("TooManyRequestsException", "slow down", retryable=True, status_code=429)


async def test_sends_once(notifier: Notifier) -> None:
    await record(notifier)
    await deliver(notifier, "k1")
    await deliver(notifier, "k1")
    assert len(fake(notifier).sent) == 1
    assert await repo.email_status(notifier.pool, "k1") == "sent"


async def test_throttled_past_the_attempts_goes_back_to_pending(notifier: Notifier) -> None:
    fake(notifier).failures = [throttled() for _ in range(3)]
    await record(notifier)
    with pytest.raises(RetryLater):
        await deliver(notifier, "k1")
    assert fake(notifier).attempts == 3
    assert await repo.email_status(notifier.pool, "k1") == "pending"
    await deliver(notifier, "k1")  # the bus's retry
    assert len(fake(notifier).sent) == 1


async def test_rejection_is_final_until_replayed(notifier: Notifier) -> None:
    fake(notifier).failures = [MailError("MessageRejected", "no", retryable=False)]
    await record(notifier)
    with pytest.raises(Reject):
        await deliver(notifier, "k1")
    assert fake(notifier).attempts == 1
    assert await repo.email_status(notifier.pool, "k1") == "failed"
    # An operator replays the dead letter once the identity is fixed: it goes out.
    await deliver(notifier, "k1")
    assert len(fake(notifier).sent) == 1


async def test_an_email_held_by_another_delivery_is_retried_later(notifier: Notifier) -> None:
    await record(notifier)
    state, _ = await repo.claim_email(notifier.pool, "k1", now=notifier.clock(), lease=30)
    assert state == repo.Claim.CLAIMED
    with pytest.raises(RetryLater):
        await deliver(notifier, "k1")
    assert fake(notifier).sent == []
    # The holder died: once its lease runs out, the email is taken over and sent.
    clock = notifier.clock
    assert isinstance(clock, FakeClock)
    clock.advance(31)
    await deliver(notifier, "k1")
    assert len(fake(notifier).sent) == 1


async def test_all_recipients_suppressed(notifier: Notifier) -> None:
    await repo.suppress(
        notifier.pool,
        ["A@example.com", "b@example.com"],
        reason="bounce",
        detail=None,
        source_event_id="x",
    )
    await record(notifier)
    await deliver(notifier, "k1")
    assert fake(notifier).attempts == 0
    assert await repo.email_status(notifier.pool, "k1") == "suppressed"


async def test_prune_keeps_recent_and_unfinished(notifier: Notifier) -> None:
    await record(notifier, "old")
    await deliver(notifier, "old")
    await record(notifier, "pending")
    later = notifier.clock() + timedelta(days=31)
    emails, _ = await repo.prune(notifier.pool, before=later - timedelta(days=30))
    assert emails == 1
    assert await repo.email_status(notifier.pool, "old") is None
    assert await repo.email_status(notifier.pool, "pending") == "pending"
