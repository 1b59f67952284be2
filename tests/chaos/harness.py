"""The chaos run's system: its own broker and database, the whole of Mensajero, and the tools
the scenarios share (traffic, faults, settling, counting).

Settings that differ from `make run` (kept in ``CHAOS_ENV``) and why:

- the sandbox does not enforce the 24 h window: commands go to numbers that never wrote;
- both the sandbox's and the sender's pair limits are lifted: the agent receives every relay;
- the sandbox retries a webhook the gateway refused up to 1,000 times, at most 2 s apart (Meta
  retries for 7 days, with longer pauses that would only lengthen the recovery measured);
- Graph calls time out after 3 s (lease 3 x 2 + 2 s), timeout faults hang 4 s, and an open token
  circuit probes every 3 s, so that the run stays within its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from shared.bus import Bus, QueueSpec
from tests.chaos.infra import PgCluster, RabbitNode, process_alive, processes_mentioning
from tests.chaos.report import Row
from tests.chaos.traffic import (
    AGENT,
    Arrivals,
    Batch,
    Chat,
    copies_at_phones,
    publish_commands,
    tally,
)
from tests.helpers import wait_for
from tests.system.harness import SERVICES, System

CHAOS_ENV = {
    "LOG_LEVEL": "INFO",
    "SANDBOX_ENFORCE_WINDOW": "false",
    "SANDBOX_PAIR_BURST": "1000000",
    "SENDER_PAIR_BURST": "1000000",
    "SANDBOX_WEBHOOK_MAX_ATTEMPTS": "1000",
    "SANDBOX_WEBHOOK_RETRY_MAX_SECONDS": "2",
    "SANDBOX_TIMEOUT_SECONDS": "4",
    "SENDER_REQUEST_TIMEOUT_SECONDS": "3",
    "SENDER_LEASE_EXTRA_SECONDS": "2",
    "SENDER_CIRCUIT_PROBE_SECONDS": "3",
}
WORK_QUEUES = ("sender", "sender-status", "handoff")
IDLE_SUFFIXES = (".dead", ".feed")
STATEFUL = ("sender", "handoff")


class ChaosSystem(System):
    """A :class:`System` on the run's own broker and database, which are removed whole
    afterwards (so nothing is dropped one by one)."""

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self.processes)))
        if self.session is not None:
            await self.session.close()


@dataclass
class Chaos:
    run_id: str
    folder: Path
    node: RabbitNode
    cluster: PgCluster
    system: ChaosSystem
    bus: Bus
    chat: Chat
    arrivals: Arrivals
    rows: list[Row] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)
    tallies: list[tuple[Batch, Counter[str]]] = field(default_factory=list)
    _scenarios: int = 0
    _work_queues: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ traffic

    def batch(self, scenario: str) -> Batch:
        self._scenarios += 1
        return Batch(scenario, self._scenarios, self.run_id)

    async def commands(self, batch: Batch, count: int) -> None:
        """``count`` send commands, one recipient each, published at once (a backlog)."""
        await publish_commands(self.bus, batch.new_markers(count), batch)

    def chatting(
        self, batch: Batch, count: int, per_second: float, at_once: int = 8
    ) -> asyncio.Task[None]:
        """``count`` customer webhooks in the background, about ``per_second`` a second."""
        markers = batch.new_markers(count, AGENT)
        return asyncio.create_task(self.chat.write(markers, per_second, at_once))

    async def arrived(self, batch: Batch, at_least: int, timeout: float = 120) -> None:
        await self.arrivals.wait(batch, at_least, timeout)

    async def backlog(self, spec: QueueSpec, at_least: int, timeout: float = 60) -> None:
        """Wait until ``at_least`` messages wait in the service's work queues, its partitions
        together (besides those in hand)."""
        queues = [self.bus.names.queue(name) for name in spec.queues]

        async def deep() -> bool:
            return sum((await self.waiting(queues)).values()) >= at_least

        await wait_for(deep, timeout=timeout, interval=0.05, message=f"a backlog in {queues}")

    async def waiting(self, queues: list[str]) -> dict[str, int]:
        """Messages ready in each queue, from the broker's answer to a passive declare (fast,
        unlike rabbitmqctl, but blind to the messages consumers hold unacknowledged)."""
        channel = await self.bus.connection.channel()
        try:
            counts = {}
            for name in queues:
                queue = await channel.declare_queue(name, passive=True)
                counts[name] = int(queue.declaration_result.message_count or 0)
            return counts
        finally:
            await channel.close()

    # ------------------------------------------------------------------ faults

    async def fault(self, **fields: Any) -> None:
        """Merge a fault into the sandbox (`POST /_sandbox/faults`, see sandbox/README.md)."""
        await self.system.post_json(f"{self.system.url('sandbox')}/_sandbox/faults", fields)

    async def clear_faults(self) -> float:
        assert self.system.session is not None
        async with self.system.session.delete(f"{self.system.url('sandbox')}/_sandbox/faults"):
            return time.time()

    async def kill_and_restart(self, service: str) -> float:
        """SIGKILL ``service``, start it again; when it was started (the fault's end)."""
        self.pids.add(self.system.processes[service].pid)
        await self.system.kill(service)
        started = time.time()
        await self.system.start(service, timeout=60)
        self.pids.add(self.system.processes[service].pid)
        return started

    # ------------------------------------------------------------------ settling

    async def settle(
        self,
        batch: Batch,
        fault_end: float,
        writers: tuple[asyncio.Task[None], ...] = (),
        *,
        unavoidable: bool = False,
        timeout: float = 120,
    ) -> Row:
        """Wait until every marker arrived (or ``timeout``), the system is ready and idle; count.

        The count is taken from the phones once nothing is left to do anywhere (queues, retry
        tiers, outboxes, the sandbox's webhooks), so a late second copy is counted too.
        """
        await asyncio.gather(*writers)
        with contextlib.suppress(AssertionError):  # what never came is counted as lost below
            await self.arrived(batch, len(batch.expected), timeout)
        ready = await self._ready_at(timeout)
        await self._idle(timeout)
        copies = await tally(self.system, batch)
        firsts = [self.arrivals.first_at[m] for m in batch.expected if m in self.arrivals.first_at]
        recovery = max(max(firsts, default=fault_end), ready) - fault_end
        row = Row(
            scenario=batch.scenario,
            sent=len(batch.expected),
            delivered=len(copies),
            lost=len(batch.expected) - len(copies),
            duplicated=sum(1 for n in copies.values() if n > 1),
            recovery_seconds=max(recovery, 0.0),
            unavoidable=unavoidable,
        )
        self.rows.append(row)
        self.tallies.append((batch, copies))
        if row.lost or row.duplicated:
            await self._diagnose(batch, copies)
        return row

    def expect_clean(self, row: Row) -> None:
        assert (row.lost, row.duplicated) == (0, 0), (
            f"{row.scenario}: {row.lost} lost, {row.duplicated} duplicated of {row.sent} "
            f"(what the sender logged for them: {self.folder}/diagnosis-*.json)"
        )

    async def _ready_at(self, timeout: float) -> float:
        assert self.system.session is not None
        deadline = time.monotonic() + timeout
        waiting = set(SERVICES)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with self.system.session.get(self.system.health_url(name)) as answer:
                        if answer.status == 200:
                            waiting.discard(name)
            if waiting:
                await asyncio.sleep(0.1)
        if waiting:
            raise AssertionError(f"not ready {timeout}s after the fault: {sorted(waiting)}")
        return time.time()

    async def _idle(self, timeout: float) -> None:
        """Nothing left to do, twice in a row: no work queued or held by a consumer, no outbox
        row unpublished, no webhook pending at the sandbox."""
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 2:
            # The cheap look first; rabbitmqctl (seconds per call) also sees what is in hand.
            busy = await self.busy(thorough=False) or await self.busy(thorough=True)
            calm = 0 if busy else calm + 1
            if busy and time.monotonic() > deadline:
                raise AssertionError(f"still busy {timeout}s after the fault: {busy}")
            await asyncio.sleep(0.2)

    async def work_queues(self) -> list[str]:
        """The queues (and retry tiers) of the services on the markers' way: the sender's and
        handoff's, without dead letters and the feed (the notifier's mail is not on it)."""
        if not self._work_queues:
            prefix = self.system.prefix + "."
            self._work_queues = sorted(
                name
                for name in await self.node.queue_depths()
                if name.startswith(prefix)
                and name[len(prefix) :].split(".")[0] in WORK_QUEUES
                and not name.endswith(IDLE_SUFFIXES)
            )
        return self._work_queues

    async def busy(self, *, thorough: bool) -> dict[str, int]:
        queues = await self.work_queues()
        if thorough:
            depths = await self.node.queue_depths()
        else:
            depths = await self.waiting(queues)
        busy = {name: depths.get(name, 0) for name in queues if depths.get(name, 0)}
        conn = await asyncpg.connect(self.cluster.url)
        try:
            for service in STATEFUL:
                outbox = f"{self.system.schema(service)}.outbox"
                waiting = await conn.fetchval(
                    f"SELECT count(*) FROM {outbox} WHERE published_at IS NULL"
                )
                if waiting:
                    busy[outbox] = int(waiting)
        finally:
            await conn.close()
        pending = await self.system.get_json(
            f"{self.system.url('sandbox')}/_sandbox/webhooks?after={2**62}"
        )
        if pending["pending"]:
            busy["sandbox webhooks"] = int(pending["pending"])
        return busy

    async def dead_letters(self) -> dict[str, int]:
        return {
            name: count
            for name, count in (await self.node.queue_depths()).items()
            if count and name.endswith(".dead")
        }

    async def _diagnose(self, batch: Batch, copies: Counter[str]) -> None:
        """For a lost or doubled marker, its rows in the sender's message log, saved beside the
        table (what the sender recorded: status, attempts, wamid, timeline)."""
        wrong = [m for m in batch.expected if copies[m] != 1]
        conn = await asyncpg.connect(self.cluster.url)
        try:
            rows = await conn.fetch(
                f"SELECT command_id, recipient, status, attempts, wamid, reason, timeline::text,"
                f" command->'content'->>'body' AS body"
                f" FROM {self.system.schema('sender')}.messages"
                f" WHERE command->'content'->>'body' LIKE ANY($1::text[])",
                [f"%{m}%" for m in wrong],
            )
        finally:
            await conn.close()
        found = {
            "scenario": batch.scenario,
            "copies": {m: copies[m] for m in wrong},
            "at_the_phones": {
                marker: [{"wamid": r["wamid"], "time": r["time"]} for r in records]
                for marker, records in (await copies_at_phones(self.system, batch, wrong)).items()
            },
            "sender_messages": [dict(r) for r in rows],
            "dead_letters": await self.dead_letters(),
        }
        name = f"diagnosis-{batch.number:02d}.json"
        (self.folder / name).write_text(json.dumps(found, indent=1, default=str), "utf-8")

    # ------------------------------------------------------------------ teardown

    def leftovers(self, state: Path) -> list[str]:
        """What the run left behind: its servers' data, or any of its processes still alive."""
        found = []
        if state.exists() and any(state.iterdir()):
            found.append(f"{state} not empty: {sorted(p.name for p in state.iterdir())}")
        for marker in (self.node.node, str(state)):
            if pids := processes_mentioning(marker):
                found.append(f"processes of {marker}: {pids}")
        alive = sorted(pid for pid in self.pids if pid > 0 and process_alive(pid))
        if alive:
            found.append(f"processes started by the run still alive: {alive}")
        return found
