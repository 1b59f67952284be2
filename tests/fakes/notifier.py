"""The notifier's fakes, for its unit tests and the bench: a mailer that keeps what it sends,
and a clock the test moves by hand. ``notifier.mailer.SesMailer`` is tested against moto's
server (tests/notifier/test_mailer.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from notifier.mailer import Email, MailError, SendResult


@dataclass
class FakeMailer:
    """Keeps what it sends; ``failures`` are raised, in order, before sends succeed."""

    sent: list[Email] = field(default_factory=list)
    failures: list[MailError] = field(default_factory=list)
    attempts: int = 0
    identities: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, email: Email) -> SendResult:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(email)
        return SendResult(message_id=f"fake-{next(self._ids)}", status_code=200, request_id=None)

    async def create_identities(self, identities: Iterable[str]) -> None:
        self.identities.update(identities)


class FakeClock:
    """A clock the test moves by hand (digest windows, the per-minute cap)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
