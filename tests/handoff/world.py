"""The handoff use cases on the in-memory repository with a controllable clock, for unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.config import HandoffConfig
from handoff.outcome import Outcome
from handoff.ratings import RATING_PREFIX
from shared.events import Event, HandoffRequested, Identity, InboundMessage, SendMessage
from shared.profiles import CompanyProfile, Profiles
from shared.signals import IdentityChanged
from shared.timers import Timer
from tests.fakes.handoff import FakeRepository
from tests.handoff.support import AGENT, CUSTOMER, Core, echo, inbound, wamid_of

MONDAY_NOON = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = MONDAY_NOON) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class World:
    """A core on a fake repository; every send is 'accepted' with a known wamid."""

    def __init__(
        self,
        *,
        agents: Sequence[str] = (AGENT,),
        profile: CompanyProfile | None = None,
        bot_mode: str = "menu",
        echo_quiet: float = 1800.0,
    ) -> None:
        self.clock = Clock()
        self.repo = FakeRepository()
        profiles = Profiles(profiles=[profile or CompanyProfile()])
        config = HandoffConfig(profiles, list(agents), 600, 3600, bot_mode, echo_quiet)
        self.core = Core(config, self.clock)
        self.events: list[Event] = []

    async def _record(self, outcome: Outcome) -> list[Event]:
        for event in outcome.events:
            if isinstance(event, SendMessage):
                await self.repo.set_wamid(event.event_id, wamid_of(event))
        self.events.extend(outcome.events)
        return outcome.events

    async def says(self, phone: str | None, text: str | None = None, **kw: Any) -> list[Event]:
        kw.setdefault("at", self.clock.now)
        msg: InboundMessage = inbound(phone, text, **kw)
        return await self._record(await self.core.on_inbound(self.repo, msg))

    async def echoes(self, customer: Identity, text: str) -> list[Event]:
        """Someone at the business writes ``customer`` from the WhatsApp Business app."""
        event = echo(customer, text, at=self.clock.now)
        return await self._record(await self.core.on_echo(self.repo, event))

    async def changes(self, change: IdentityChanged) -> list[Event]:
        return await self._record(await self.core.on_identity_changed(self.repo, change))

    async def fire(self, code: str, kind: str) -> list[Event]:
        timer = Timer(1, code, kind, self.clock.now)
        return await self._record(await self.core.on_timer(self.repo, timer))

    async def rates(
        self, code: str, score: int, phone: str | None = CUSTOMER, **kw: Any
    ) -> list[Event]:
        """The customer taps case ``code``'s rating button ``score`` (3 best)."""
        return await self.says(phone, None, reply_id=f"{RATING_PREFIX}{code}:{score}", **kw)

    async def rating_expires(self, code: str) -> list[Event]:
        """The deadline of case ``code``'s rating comes, unanswered."""
        self.clock.now = self.repo.timers[(code, "rating")].due_at
        return await self.fire(code, "rating")

    def sends(self, to: str, events: Sequence[Event] | None = None) -> list[SendMessage]:
        found = events if events is not None else self.events
        return [e for e in found if isinstance(e, SendMessage) and e.to == to]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def open_agent_window(self, agent: str = AGENT) -> None:
        await self.says(agent, "/ayuda", name="Agente")

    async def active_case(self, agent: str = AGENT, **customer: Any) -> str:
        """An agent on a case of the customer (CUSTOMER, or ``phone=None, user_id=...``)."""
        phone = customer.pop("phone", CUSTOMER)
        await self.open_agent_window(agent)
        await self.says(phone, "quiero un humano", **customer)
        code: str = self.of(HandoffRequested)[-1].case_code
        await self.says(agent, f"#{code} hola, te atiendo", name="Agente")
        return code
