"""The handler table: one typed handler per event type, the queue's bindings derived from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shared.bus import Delivery, Reject
from shared.events import (
    ErrorReported,
    Event,
    Identity,
    InboundMessage,
    MessageSent,
    utcnow,
)
from shared.handlers import HandlerTable


@dataclass
class Deps:
    seen: list[tuple[str, str]] = field(default_factory=list)


async def on_inbound(deps: Deps, message: InboundMessage, delivery: Delivery) -> None:
    deps.seen.append(("inbound", message.wamid))


async def on_sent(deps: Deps, sent: MessageSent, delivery: Delivery) -> None:
    deps.seen.append(("sent", sent.wamid))


def table() -> HandlerTable[Deps]:
    built: HandlerTable[Deps] = HandlerTable("things", single_active_consumer=True)
    built.on(InboundMessage, on_inbound, key=lambda m: m.sender.key)
    built.on(MessageSent, on_sent)
    return built


def inbound(wamid: str) -> InboundMessage:
    return InboundMessage(
        phone_number_id="1",
        wamid=wamid,
        timestamp=utcnow(),
        message_type="text",
        sender=Identity(phone="+5491155550001"),
        text="hola",
    )


def sent(wamid: str) -> MessageSent:
    return MessageSent(command_id="c", wamid=wamid, to="+1", phone_number_id="1", kind="text")


def test_the_queue_binds_exactly_the_tables_event_types() -> None:
    spec = table().spec(retry_tiers_ms=(100, 200))
    assert spec.service == "things"
    assert spec.routing_keys == [InboundMessage.TYPE, MessageSent.TYPE]
    assert spec.single_active_consumer and list(spec.retry_tiers_ms) == [100, 200]


async def test_each_event_goes_to_the_handler_of_its_type() -> None:
    deps = Deps()
    subscription = table().bind(deps, concurrency=3)
    delivery = Delivery(attempt=1, redelivered=False)
    await subscription(inbound("w.1"), delivery)
    await subscription(sent("w.2"), delivery)
    assert deps.seen == [("inbound", "w.1"), ("sent", "w.2")]
    assert subscription.concurrency == 3
    assert subscription.key(inbound("w.3")) == "+5491155550001"
    assert subscription.key(sent("w.4")) is None  # no order asked for


async def test_an_event_without_a_handler_is_rejected_with_the_reason() -> None:
    subscription = table().bind(Deps())
    stray: Event = ErrorReported(service="x", error_type="y", message="z")
    with pytest.raises(Reject, match=r"no handler for error\.reported"):
        await subscription(stray, Delivery(attempt=1, redelivered=False))
    assert subscription.key(stray) is None


def test_a_second_handler_for_one_type_is_refused() -> None:
    built = table()

    async def again(deps: Deps, message: InboundMessage, delivery: Delivery) -> None:
        deps.seen.append(("again", message.wamid))

    with pytest.raises(ValueError, match="InboundMessage has a handler already"):
        built.on(InboundMessage, again)
    assert built.event_types == (InboundMessage, MessageSent)


def test_a_key_may_read_the_dependencies() -> None:
    built: HandlerTable[Deps] = HandlerTable("things")
    built.on(MessageSent, on_sent, deps_key=lambda deps, s: f"{len(deps.seen)}:{s.wamid}")
    deps = Deps(seen=[("learnt", "x")])
    assert built.bind(deps).key(sent("w.5")) == "1:w.5"
    with pytest.raises(ValueError, match="has two keys"):
        built.on(InboundMessage, on_inbound, key=lambda m: m.wamid, deps_key=lambda d, m: m.wamid)
