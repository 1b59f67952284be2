"""The shared runner: resources in order and back, consumers from handler tables, loops, and a
graceful stop (in-flight work finishes within the grace) on a real broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from shared.bus import Bus, Delivery
from shared.events import ErrorReported
from shared.handlers import HandlerTable
from shared.runner import Loop, Service, running
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@dataclass
class Recorded:
    """A resource that records its lifecycle in a shared journal."""

    name: str
    journal: list[str]
    fail_start: bool = False

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.journal.append(f"start {self.name}")

    async def close(self) -> None:
        self.journal.append(f"close {self.name}")


@dataclass
class Deps:
    journal: list[str]
    release: asyncio.Event = field(default_factory=asyncio.Event)
    handled: list[str] = field(default_factory=list)


async def on_error(deps: Deps, event: ErrorReported, delivery: Delivery) -> None:
    deps.journal.append(f"handling {event.message}")
    await deps.release.wait()  # in flight until the test lets it go
    deps.handled.append(event.message)


TABLE: HandlerTable[Deps] = HandlerTable("runner")
TABLE.on(ErrorReported, on_error)


def service(bus: Bus, deps: Deps, *resources: Recorded, loops: list[Loop] | None = None) -> Service:
    return Service(
        name="test",
        bus=bus,
        registry=CollectorRegistry(),
        resources=list(resources),
        subscriptions=[TABLE.bind(deps, concurrency=2, retry_tiers_ms=(100,))],
        loops=loops or [],
        shutdown_grace=5.0,
    )


async def test_resources_open_in_order_and_close_in_reverse_after_in_flight_work(
    bus: Bus,
) -> None:
    journal: list[str] = []
    deps = Deps(journal)
    rounds: list[int] = []

    async def tick() -> None:
        rounds.append(len(rounds))

    built = service(
        bus,
        deps,
        Recorded("database", journal),
        Recorded("outbox", journal),
        loops=[Loop("ticker", 0.01, tick)],
    )
    async with running(built):
        assert journal == ["start database", "start outbox"]
        await wait_for(lambda: len(rounds) >= 3, message="the loop's rounds")
        await bus.publish(ErrorReported(service="t", error_type="x", message="uno"))
        await wait_for(lambda: "handling uno" in journal, message="the message in flight")
        # Stopping now: the message in flight is let finish within the grace.
        asyncio.get_running_loop().call_later(0.2, deps.release.set)
    assert deps.handled == ["uno"]
    assert journal[-2:] == ["close outbox", "close database"]
    await bus.delete_topology([TABLE.spec(retry_tiers_ms=(100,))])


async def test_a_resource_that_cannot_start_closes_those_started_before_it(bus: Bus) -> None:
    journal: list[str] = []
    built = service(
        bus,
        Deps(journal),
        Recorded("database", journal),
        Recorded("mailer", journal, fail_start=True),
        Recorded("outbox", journal),
    )
    with pytest.raises(RuntimeError, match="mailer cannot start"):
        async with running(built):
            raise AssertionError("never runs")
    assert journal == ["start database", "close database"]
