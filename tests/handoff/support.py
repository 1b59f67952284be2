"""Test support for handoff: inbound message builders, the use cases on a clock, a fake sender
and a running service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from handoff import usecases
from handoff.app import create_app
from handoff.config import HandoffConfig
from handoff.feed import feed_queue_name
from handoff.handlers import TABLE, Clock
from handoff.outcome import Outcome
from handoff.repository import Repository
from handoff.settings import Settings
from shared.bus import Bus, Delivery, QueueSpec
from shared.events import (
    Event,
    HandoffRequestCommand,
    Identity,
    InboundMessage,
    Location,
    Media,
    MessageContext,
    MessageFailed,
    MessageSent,
    Reaction,
    Reply,
    SendMessage,
    TextContent,
    stable_id,
)
from shared.phone import digits
from shared.signals import IdentityChange, IdentityChanged, MessageEcho
from shared.timers import Timer
from tests.helpers import wait_for

PHONE_NUMBER_ID = "100000000000001"
AGENT = "+5491100000000"
AGENT2 = "+5491100000002"
CUSTOMER = "+5491155550001"


def inbound(
    phone: str | None,
    text: str | None = None,
    *,
    name: str | None = "Juan Pérez",
    user_id: str | None = None,
    username: str | None = None,
    system: dict[str, Any] | None = None,
    wamid: str | None = None,
    quoting: str | None = None,
    reply_id: str | None = None,
    reply_kind: str = "button_reply",
    message_type: str | None = None,
    media: Media | None = None,
    location: Location | None = None,
    reaction: Reaction | None = None,
    at: datetime | None = None,
) -> InboundMessage:
    wamid = wamid or f"wamid.in.{uuid.uuid4().hex}"
    kind = message_type or (
        "interactive" if reply_id and reply_kind != "template_button" else "text"
    )
    if reply_kind == "template_button" and reply_id:
        kind = "button"
    return InboundMessage(
        event_id=stable_id("inbound", wamid),
        phone_number_id=PHONE_NUMBER_ID,
        wamid=wamid,
        timestamp=at or datetime.now(UTC),
        message_type=kind,
        sender=Identity(
            phone=phone,
            wa_id=digits(phone) if phone else None,
            user_id=user_id,
            name=name,
            username=username,
        ),
        text=text,
        system=system,
        reply=Reply(kind=reply_kind, id=reply_id, title=text) if reply_id else None,
        context=MessageContext(message_id=quoting) if quoting else None,
        media=media,
        location=location,
        reaction=reaction,
    )


def echo(customer: Identity, text: str, *, at: datetime | None = None) -> MessageEcho:
    """What someone at the business wrote ``customer`` from the WhatsApp Business app."""
    wamid = f"wamid.echo.{uuid.uuid4().hex}"
    return MessageEcho(
        event_id=stable_id("echo", wamid),
        phone_number_id=PHONE_NUMBER_ID,
        wamid=wamid,
        timestamp=at or datetime.now(UTC),
        message_type="text",
        customer=customer,
        text=text,
    )


def identity_changed(
    change: IdentityChange,
    previous: Identity,
    current: Identity,
    *,
    at: datetime | None = None,
) -> IdentityChanged:
    when = at or datetime.now(UTC)
    return IdentityChanged(
        event_id=stable_id("identity", change, previous.key, current.key, when.isoformat()),
        phone_number_id=PHONE_NUMBER_ID,
        change=change,
        previous=previous,
        current=current,
        timestamp=when,
    )


class Core:
    """Handoff's entry points with one configuration and clock, as its handlers call them."""

    def __init__(self, config: HandoffConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock

    async def on_inbound(
        self, repo: Repository, msg: InboundMessage, *, wait_for_quotes: bool = False
    ) -> Outcome:
        return await usecases.on_inbound(
            self.config, repo, msg, now=self.clock(), wait_for_quotes=wait_for_quotes
        )

    async def on_request(self, repo: Repository, command: HandoffRequestCommand) -> Outcome:
        return await usecases.on_request(self.config, repo, command, now=self.clock())

    async def on_failed(self, repo: Repository, failed: MessageFailed) -> Outcome:
        return await usecases.on_failed(self.config, repo, failed, now=self.clock())

    async def on_timer(self, repo: Repository, timer: Timer) -> Outcome:
        return await usecases.on_timer(self.config, repo, timer, now=self.clock())

    async def on_sent(self, repo: Repository, sent: MessageSent) -> bool:
        return await usecases.on_sent(repo, sent)

    async def on_echo(self, repo: Repository, event: MessageEcho) -> Outcome:
        return await usecases.on_echo(self.config, repo, event, now=self.clock())

    async def on_identity_changed(self, repo: Repository, change: IdentityChanged) -> Outcome:
        return await usecases.on_identity_changed(self.config, repo, change, now=self.clock())


def wamid_of(command: SendMessage) -> str:
    """The wamid the fake sender gives a command (deterministic)."""
    return f"wamid.out.{command.event_id}"


def body(command: SendMessage) -> str:
    content = command.content
    if isinstance(content, TextContent):
        return content.body
    return getattr(content, "body", "") or ""


class Probe:
    """Everything handoff publishes, and a fake sender answering each send command."""

    def __init__(self, bus: Bus, *, accept: bool = True) -> None:
        self.bus = bus
        self.accept = accept
        self.events: list[Event] = []

    async def start(self) -> None:
        spec = QueueSpec(
            service="probe",
            routing_keys=["whatsapp.send.requested", "handoff.#", "bot.message"],
            retry_tiers_ms=(100,),
        )
        await self.bus.consume(spec, self._on, concurrency=1)

    async def _on(self, event: Event, delivery: Delivery) -> None:
        self.events.append(event)
        if self.accept and isinstance(event, SendMessage):
            await self.bus.publish(
                MessageSent(
                    event_id=stable_id("accepted", event.event_id),
                    command_id=event.event_id,
                    wamid=wamid_of(event),
                    to=event.to,
                    phone_number_id=PHONE_NUMBER_ID,
                    kind=event.content.kind,
                )
            )

    def sends(self, to: str | None = None) -> list[SendMessage]:
        found = [e for e in self.events if isinstance(e, SendMessage)]
        return [e for e in found if to is None or e.to == to]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_sends(self, to: str, count: int, timeout: float = 10.0) -> list[SendMessage]:
        try:
            await wait_for(lambda: len(self.sends(to)) >= count, timeout=timeout)
        except AssertionError:
            got = [body(s) for s in self.sends(to)]
            raise AssertionError(f"wanted {count} send(s) to {to}; got {got}") from None
        return self.sends(to)

    async def wait_text(self, to: str, fragment: str, timeout: float = 10.0) -> SendMessage:
        def find() -> SendMessage | None:
            return next((s for s in self.sends(to) if fragment in body(s)), None)

        try:
            found: SendMessage = await wait_for(find, timeout=timeout)
        except AssertionError:
            got = [body(s) for s in self.sends(to)]
            raise AssertionError(f"wanted {fragment!r} to {to}; got {got}") from None
        return found


def make_settings(
    rabbitmq_url: str, database_url: str, bus_prefix: str, db_schema: str, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "RABBITMQ_URL": rabbitmq_url,
        "DATABASE_URL": database_url,
        "BUS_PREFIX": bus_prefix,
        "DB_SCHEMA": db_schema,
        "AGENT_WHATSAPP_NUMBER": AGENT,
        "HANDOFF_TIMER_POLL_SECONDS": 0.05,
        "SHUTDOWN_GRACE_SECONDS": 2.0,
        "STARTUP_TIMEOUT_SECONDS": 5.0,
    }
    values.update(extra)
    return Settings(**values)


@asynccontextmanager
async def running_handoff(settings: Settings, **kw: Any) -> AsyncIterator[web.Application]:
    app = create_app(settings, **kw)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield app
    finally:
        await runner.cleanup()


async def drop_handoff_queue(bus: Bus) -> None:
    channel = await bus.connection.channel()
    try:
        await channel.queue_delete(feed_queue_name(bus))
    except Exception:  # never declared in this test
        pass
    finally:
        if not channel.is_closed:
            await channel.close()
    partitions = Settings.model_fields["HANDOFF_PARTITIONS"].default
    await bus.delete_topology([TABLE.spec(partitions=partitions)])


async def wait_mapped(database_url: str, schema: str, command: SendMessage) -> None:
    """Wait until handoff has learnt the wamid of ``command`` (from whatsapp.send.accepted)."""
    import asyncpg

    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:

        async def mapped() -> bool:
            value = await conn.fetchval(
                "SELECT wamid FROM outgoing WHERE command_id = $1", command.event_id
            )
            return value is not None

        await wait_for(mapped, message=f"wamid of {command.event_id}")
    finally:
        await conn.close()
