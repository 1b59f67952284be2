"""The gateway's edges in memory, for the unit tests of its use cases (tests/gateway).

The real ones cross a process boundary and have their integration tests: the publisher
against RabbitMQ (tests/gateway/test_webhook.py, test_outage.py), the SNS fetcher against an
HTTP server (tests/gateway/test_sns.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.publisher import Outgoing
from gateway.sns import SnsRejected
from shared.bus import BusError
from shared.events import Event


@dataclass
class FakePublisher:
    """Records what it is asked to publish; raises ``failure`` instead when it is set."""

    published: list[Event] = field(default_factory=list)
    failure: BusError | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(self, items: Sequence[Outgoing]) -> None:
        if not items:  # as the real one: nothing to confirm
            return
        if self.failure is not None:
            raise self.failure
        self.published.extend(item.event for item in items)


@dataclass
class FakeFetcher:
    """Answers each URL of ``pages`` with its body, any other as a 404 would."""

    pages: dict[str, bytes] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.pages:
            raise SnsRejected(f"{url} answered HTTP 404")
        return self.pages[url]
