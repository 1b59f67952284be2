"""Handoff scaled out on real RabbitMQ and PostgreSQL: two and three replicas (built by the
bootstrap, on one prefix and schema) share the partitions; a burst from many customers is
handled once each, every customer's messages in order, with a replica killed and another started
in the middle."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

import pytest

from handoff.bootstrap import bootstrap
from handoff.settings import Settings
from shared.bus import Bus
from shared.events import BotMessage
from shared.partitions import PartitionLeases
from shared.resources import Database
from shared.runner import Service, running
from tests.handoff.support import Probe, inbound
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

CUSTOMERS = 40
MESSAGES = 10


class Replica:
    """One handoff replica in this process, as ``python -m handoff`` runs it (minus HTTP)."""

    def __init__(self, settings: Settings) -> None:
        self.service: Service = bootstrap(settings)
        self._up = asyncio.Event()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with running(self.service):
            self._up.set()
            await self._stop.wait()

    async def started(self) -> Replica:
        await asyncio.wait_for(self._up.wait(), 20)
        return self

    def resource(self, kind: type[object]) -> object:
        return next(r for r in self.service.resources if isinstance(r, kind))

    @property
    def leases(self) -> PartitionLeases:
        leases = self.resource(PartitionLeases)
        assert isinstance(leases, PartitionLeases)
        return leases

    async def kill(self) -> None:
        """A crash: its broker connection, database sessions and partition locks drop at once,
        whatever it was in the middle of (unacked messages return to their partitions)."""
        database = self.resource(Database)
        assert isinstance(database, Database)
        await self.service.bus.connection.close()
        database.pool.terminate()
        conn = self.leases._conn
        if conn is not None:
            conn.terminate()
        self._task.cancel()
        done, _ = await asyncio.wait({self._task}, timeout=10)
        assert done, "the killed replica did not end"

    async def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            await self._task


def markers(probe: Probe) -> dict[tuple[str, int], list[BotMessage]]:
    """Each (customer, n) the bot was handed, with every distinct event it came in."""
    found: dict[tuple[str, int], dict[str, BotMessage]] = defaultdict(dict)
    for event in probe.of(BotMessage):
        phone, text = event.message.sender.phone, event.message.text or ""
        assert phone is not None and text.startswith("m"), event
        found[(phone, int(text[1:]))][event.event_id] = event
    return {marker: list(events.values()) for marker, events in found.items()}


@pytest.mark.parametrize("replicas", [2, 3])
async def test_replicas_share_a_burst_in_order_once_each_through_a_crash(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings], replicas: int
) -> None:
    settings = settings_for(
        BOT_MODE="external",
        HANDOFF_PARTITIONS=4,
        HANDOFF_PARTITION_BALANCE_SECONDS=0.2,
        HANDOFF_OUTBOX_RELAY_AFTER_SECONDS=1.0,
    )
    running_ = [await Replica(settings).started() for _ in range(replicas)]
    try:
        await wait_for(
            lambda: (
                all(r.leases.held for r in running_)
                and sum(len(r.leases.held) for r in running_) == 4
            ),
            message="every replica holds a share of the 4 partitions",
        )
        customers = [f"+5491166{n:06d}" for n in range(CUSTOMERS)]

        async def burst() -> None:
            for n in range(MESSAGES):  # each customer's in order, all customers at once
                await asyncio.gather(*(bus.publish(inbound(c, f"m{n}")) for c in customers))

        publishing = asyncio.create_task(burst())
        total = CUSTOMERS * MESSAGES
        await wait_for(lambda: len(markers(probe)) >= total // 4, timeout=30)
        await running_.pop(0).kill()
        await wait_for(lambda: len(markers(probe)) >= total // 2, timeout=30)
        running_.append(await Replica(settings).started())
        await publishing
        await wait_for(lambda: len(markers(probe)) == total, timeout=60, message="all markers")
        await wait_for(
            lambda: (
                sum(len(r.leases.held) for r in running_) == 4
                and all(r.leases.held for r in running_)
            ),
            message="the restarted replica got its share",
        )
    finally:
        for replica in running_:
            await replica.stop()

    found = markers(probe)
    expected = {(c, n) for c in customers for n in range(MESSAGES)}
    lost = expected - set(found)
    duplicated = [marker for marker, events in found.items() if len(events) > 1]
    assert (len(lost), len(duplicated)) == (0, 0), (sorted(lost)[:5], duplicated[:5])
    for customer in customers:
        handled = sorted(range(MESSAGES), key=lambda n: found[(customer, n)][0].occurred_at)
        assert handled == list(range(MESSAGES)), (customer, handled)
