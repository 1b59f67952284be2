"""Traffic where every message carries a unique marker, and counting markers at the phones.

Two kinds of traffic reach the sandbox's phones:

- **commands**: ``whatsapp.send.requested`` published to the system's exchange, one recipient
  per marker (the sender's own path: claim, pace, Graph call, record);
- **chat**: customers in a case with an agent write through ``POST /_sandbox/inbound`` (a signed
  webhook to the gateway); handoff relays each text to the agent's phone (gateway -> handoff ->
  sender -> sandbox: every service and both stores on the way).

A marker arriving twice at its phone is a duplicate; one never arriving is lost.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.bus import Bus
from shared.events import SendMessage, TextContent
from tests.helpers import wait_for
from tests.system.harness import System
from tests.system.phones import text_of

MARKER = re.compile(r"chaos-[0-9a-f]{8}-\d{2}-\d{4}")
AGENT = "+5491100000000"  # the sandbox default AGENT_WHATSAPP_NUMBER


@dataclass
class Batch:
    """One scenario's markers, each with the phone it must reach."""

    scenario: str
    number: int  # the scenario's index, part of its markers and recipients
    run_id: str
    expected: dict[str, str] = field(default_factory=dict)  # marker -> phone

    def new_markers(self, count: int, phone: str | None = None) -> list[str]:
        """``count`` new markers; to ``phone``, or each to a recipient of its own."""
        start = len(self.expected)
        made = []
        for i in range(start, start + count):
            marker = f"chaos-{self.run_id}-{self.number:02d}-{i:04d}"
            self.expected[marker] = phone or f"+549118{self.number:02d}{i:05d}"
            made.append(marker)
        return made


@dataclass
class Arrivals:
    """Every send the sandbox accepted, read incrementally: which markers arrived, and when."""

    system: System
    copies: Counter[str] = field(default_factory=Counter)
    first_at: dict[str, float] = field(default_factory=dict)
    _after: int = -1

    async def refresh(self) -> None:
        url = f"{self.system.url('sandbox')}/_sandbox/messages?after={self._after}"
        for record in (await self.system.get_json(url))["messages"]:
            self._after = max(self._after, int(record["index"]))
            for marker in MARKER.findall(text_of(record)):
                self.copies[marker] += 1
                self.first_at.setdefault(marker, float(record["time"]))

    async def count(self, batch: Batch) -> int:
        await self.refresh()
        return sum(1 for marker in batch.expected if marker in self.copies)

    async def wait(self, batch: Batch, at_least: int, timeout: float) -> None:
        async def enough() -> bool:
            return await self.count(batch) >= at_least

        await wait_for(
            enough,
            timeout=timeout,
            interval=0.1,
            message=f"{at_least} markers of {batch.scenario!r} at the phones",
        )


async def copies_at_phones(
    system: System, batch: Batch, markers: list[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every copy of the batch's markers (or of ``markers``) its own phone received, read from
    the phones' API: Meta's wamid, the time it arrived, the body."""
    found: dict[str, list[dict[str, Any]]] = {m: [] for m in markers or batch.expected}
    for phone in sorted({batch.expected[m] for m in found}):
        url = f"{system.url('sandbox')}/_sandbox/phones/{phone}/messages"
        for record in (await system.get_json(url))["messages"]:
            for marker in MARKER.findall(text_of(record)):
                if marker in found and batch.expected[marker] == phone:
                    found[marker].append(record)
    return found


async def tally(system: System, batch: Batch) -> Counter[str]:
    """How many copies of each marker of ``batch`` reached its phone."""
    found = await copies_at_phones(system, batch)
    return Counter({marker: len(copies) for marker, copies in found.items() if copies})


async def publish_commands(bus: Bus, markers: list[str], batch: Batch) -> None:
    commands = [
        SendMessage(to=batch.expected[m], content=TextContent(body=m), origin="chaos")
        for m in markers
    ]
    await bus.publish_many(commands, timeout=30)


class Chat:
    """Customers in an active case with the agent, writing markers the agent receives."""

    def __init__(self, system: System, customers: int) -> None:
        self.system = system
        self.customers = [f"+5491170{i:06d}" for i in range(customers)]
        self._seen_by_agent = 0

    async def _inbound(self, phone: str, text: str, **extra: Any) -> dict[str, Any]:
        url = f"{self.system.url('sandbox')}/_sandbox/inbound"
        body = {"from": phone, "name": f"Cliente {phone[-3:]}", "text": text, **extra}
        answer: dict[str, Any] = await self.system.post_json(url, body)
        return answer

    async def _agent_gets(self, fragment: str) -> dict[str, Any]:
        url = f"{self.system.url('sandbox')}/_sandbox/phones/{AGENT}/messages"

        async def find() -> dict[str, Any] | None:
            messages = (await self.system.get_json(url))["messages"]
            found = next((m for m in messages if fragment in text_of(m)), None)
            return found

        found: dict[str, Any] = await wait_for(
            find, timeout=60, interval=0.1, message=f"{fragment!r} at the agent's phone"
        )
        return found

    async def open_cases(self) -> None:
        """Each customer asks for a person and the agent claims the case by quoting its alert."""
        for phone in self.customers:
            answer = await self._inbound(phone, "quiero hablar con un humano")
            assert answer["gateway_status"] == 200, answer
            alert = await self._agent_gets(phone)
            code = re.search(r"#(\w+)", text_of(alert))
            assert code is not None, text_of(alert)
            answer = await self._inbound(AGENT, "Hola, te atiendo yo.", context_id=alert["wamid"])
            assert answer["gateway_status"] == 200, answer
            await self._agent_gets(f"Tomaste el caso #{code.group(1)}")

    async def write(self, markers: list[str], per_second: float, at_once: int = 8) -> None:
        """The customers write the markers (round robin), about ``per_second`` webhooks a
        second, up to ``at_once`` waiting for the gateway; a webhook the gateway cannot take
        now is retried by the sandbox, as Meta does."""
        slots = asyncio.Semaphore(at_once)

        async def one(phone: str, marker: str) -> None:
            try:
                await self._inbound(phone, marker)
            finally:
                slots.release()

        posts = []
        for i, marker in enumerate(markers):
            await slots.acquire()  # released when that webhook is answered
            phone = self.customers[i % len(self.customers)]
            posts.append(asyncio.create_task(one(phone, marker)))
            await asyncio.sleep(1 / per_second)  # the load's shape, not synchronisation
        await asyncio.gather(*posts)
