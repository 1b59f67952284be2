"""The publishing connection (shared.confirms, shared.publishing.PublishLink): the broker's bytes
read however they are split, then against a real RabbitMQ: login, refusals, a close, heartbeats."""

from __future__ import annotations

import asyncio
import itertools
import ssl

import pamqp.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from shared.bus import PUBLISHING_SUFFIX, Bus, BusError, QueueSpec
from shared.confirms import CHANNEL, Endpoint, Held, LinkDown, PublishConnection, Returned
from shared.events import ErrorReported
from shared.publishing import PublishLink, message_properties
from tests.helpers import close_broker_connections, wait_for

# --------------------------------------------------------------------------- the URL


def test_the_url_is_read_as_aio_pika_reads_it() -> None:
    endpoint = Endpoint.parse("amqp://u:p%40ss@h:5673/v%2Fx?heartbeat=7&name=svc")
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.password) == (
        "h",
        5673,
        "u",
        "p@ss",
    )
    assert (endpoint.vhost, endpoint.heartbeat, endpoint.name, endpoint.tls) == (
        "v/x",
        7,
        "svc",
        None,
    )
    defaults = Endpoint.parse("amqp://127.0.0.1/", name="gateway.publish")
    assert (defaults.port, defaults.user, defaults.vhost, defaults.heartbeat) == (
        5672,
        "guest",
        "/",
        60,
    )
    assert defaults.name == "gateway.publish"  # the bus's name for it wins over ?name=
    assert Endpoint.parse("amqp://h?heartbeat=soon").heartbeat == 60
    secure = Endpoint.parse("amqps://h/?no_verify_ssl=1")
    assert secure.port == 5671 and isinstance(secure.tls, ssl.SSLContext)
    assert secure.tls.verify_mode == ssl.CERT_NONE


# --------------------------------------------------------------------------- the broker's bytes


def _frame(value: object, channel: int = CHANNEL) -> bytes:
    return pamqp.frame.marshal(value, channel)  # type: ignore[arg-type]


def _returned(message_id: str, body: bytes, frame_max: int) -> bytes:
    properties = spec.Basic.Properties(message_id=message_id)
    chunks = [body[i : i + frame_max] for i in range(0, len(body), frame_max)]
    return b"".join(
        [
            _frame(spec.Basic.Return(312, "NO_ROUTE", "ex", "nothing.bound")),
            _frame(ContentHeader(0, len(body), properties)),
            *(_frame(ContentBody(chunk)) for chunk in chunks),
        ]
    )


def _answers() -> bytes:
    """For publishes 1..6: 1-2 acked at once, 3 returned then acked, 4 nacked, 6 then 5."""
    return b"".join(
        [
            _frame(spec.Basic.Ack(2, multiple=True)),
            _returned("m3", b"x" * 300, 100),
            _frame(spec.Basic.Ack(3)),
            pamqp.frame.marshal(Heartbeat(), 0),
            _frame(spec.Basic.Nack(4)),
            _frame(spec.Basic.Ack(6)),
            _frame(spec.Basic.Ack(5)),
        ]
    )


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_answers_split_anywhere_settle_each_publish(cuts: list[int]) -> None:
    async def scenario() -> list[str]:
        connection = PublishConnection()  # no transport: what it writes goes nowhere
        futures = [
            connection.publish(
                "ex", "k", message_properties(f"m{n}", "t", None, {}), b"{}", f"m{n}"
            )
            for n in range(1, 7)
        ]
        data = _answers()
        bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        for start, end in itertools.pairwise(bounds):
            connection.data_received(data[start:end])
        outcomes = []
        for future in futures:
            error = future.exception() if future.done() else TimeoutError()
            outcomes.append(type(error).__name__ if error else "acked")
        assert connection.in_flight == 0 and not connection._by_message_id
        return outcomes

    assert asyncio.run(scenario()) == ["acked", "acked", "Returned", "Nacked", "acked", "acked"]


async def test_a_lost_connection_fails_what_waits_and_refuses_more() -> None:
    connection = PublishConnection()
    waiting = connection.publish("ex", "k", b"", b"{}", "m1")
    connection.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(LinkDown, match="reset by peer"):
        await waiting
    with pytest.raises(LinkDown):
        connection.publish("ex", "k", b"", b"{}", "m2")


async def test_a_publisher_that_gave_up_is_not_answered_late() -> None:
    connection = PublishConnection()
    abandoned = connection.publish("ex", "k", b"", b"{}", "m1")
    abandoned.cancel()
    connection.data_received(_frame(spec.Basic.Ack(1)))
    assert abandoned.cancelled() and connection.in_flight == 0


async def test_a_silent_broker_is_dropped_after_missed_heartbeats() -> None:
    connection = PublishConnection()
    connection._heartbeat = 1
    waiting = connection.publish("ex", "k", b"", b"{}", "m1")
    connection._last_received -= 4  # silent for 4 s, three intervals allowed
    connection._beat()
    with pytest.raises(LinkDown, match="no heartbeat"):
        await waiting


async def test_a_frame_without_its_end_byte_drops_the_connection() -> None:
    connection = PublishConnection()
    waiting = connection.publish("ex", "k", b"", b"{}", "m1")
    connection.data_received(_frame(spec.Basic.Ack(1))[:-1] + b"\x00")
    with pytest.raises(LinkDown, match="malformed frame"):
        await waiting


# --------------------------------------------------------------------------- a real broker


def unroutable(link: PublishLink, unique: str, message_id: str) -> asyncio.Future[None]:
    """A publish to a queue that does not exist, through the default exchange: answered with a
    return (then an ack), a round trip that says the link works."""
    properties = message_properties(message_id, "t", None, {})
    return link.publish("", f"no-queue-{unique}", properties, b"{}", message_id)


@pytest.mark.integration
async def test_a_wrong_password_is_named(rabbitmq_url: str) -> None:
    wrong = rabbitmq_url.replace("guest:guest@", "guest:wrong@")
    with pytest.raises(ConnectionError, match="ACCESS_REFUSED"):
        await PublishConnection.open(Endpoint.parse(wrong))


@pytest.mark.integration
async def test_an_unknown_vhost_is_named(rabbitmq_url: str) -> None:
    with pytest.raises(ConnectionError, match=r"NOT_ALLOWED|vhost"):
        await PublishConnection.open(Endpoint.parse(rabbitmq_url.rstrip("/") + "/no-such-vhost"))


@pytest.mark.integration
async def test_a_publish_to_a_missing_exchange_drops_the_link_which_comes_back(
    rabbitmq_url: str, unique: str
) -> None:
    link = PublishLink(rabbitmq_url, f"link-{unique}")
    await link.open()
    try:
        refused = link.publish(f"missing-{unique}", "k", b"", b"{}", "m1")
        with pytest.raises(LinkDown, match="NOT_FOUND"):
            await refused
        assert await link.wait_ready(10)
        with pytest.raises(Returned, match="NO_ROUTE"):
            await unroutable(link, unique, "m2")
    finally:
        await link.close()


@pytest.mark.integration
async def test_a_bus_publishes_again_once_the_broker_closed_both_its_connections(
    rabbitmq_url: str, bus_prefix: str, unique: str
) -> None:
    name = f"link-{unique}"
    bus = Bus(f"{rabbitmq_url}?name={name}", bus_prefix)
    await bus.connect()
    sink = QueueSpec(service="sink", routing_keys=["error.#"], retry_tiers_ms=())
    try:
        await bus.declare_service_queue(sink)
        assert await close_broker_connections(name) == 2
        await bus.publish(ErrorReported(service="t", error_type="k", message="after"), timeout=20)
        await wait_for(bus.ping, timeout=20, message="both connections back")
    finally:
        await bus.delete_topology([sink])
        await bus.close()


@pytest.mark.integration
async def test_closing_a_link_closes_its_connection_politely(
    rabbitmq_url: str, unique: str
) -> None:
    # A service's stop sends Connection.Close and waits for the broker's Close-Ok, so that the
    # broker does not log the client as having "unexpectedly closed TCP connection".
    link = PublishLink(rabbitmq_url, f"close-{unique}")
    await link.open()
    with pytest.raises(Returned):  # in use, its keeper waiting on the connection
        await unroutable(link, unique, "m1")
    connection = link._connection
    assert connection is not None
    await link.close()
    assert not connection.lost.cancelled()
    assert connection.lost.result() == "closed"  # set on the broker's Close-Ok


@pytest.mark.integration
async def test_heartbeats_keep_an_idle_link_open(rabbitmq_url: str, unique: str) -> None:
    separator = "&" if "?" in rabbitmq_url else "?"
    link = PublishLink(f"{rabbitmq_url}{separator}heartbeat=1", f"beat-{unique}")
    await link.open()
    try:
        # Idle for three times the interval the broker allows without a frame from us.
        idle_until = asyncio.get_running_loop().time() + 3
        while asyncio.get_running_loop().time() < idle_until:
            await asyncio.sleep(0.5)  # letting time pass is the test, nothing is awaited
            assert link.connected
        with pytest.raises(Returned):
            await unroutable(link, unique, "m1")
    finally:
        await link.close()


@pytest.mark.integration
async def test_the_publishing_connection_is_named_after_the_bus(
    rabbitmq_url: str, bus_prefix: str, unique: str
) -> None:
    bus = Bus(rabbitmq_url, bus_prefix, name=f"svc-{unique}")
    await bus.connect()
    try:
        assert bus._link is not None
        assert bus._link.endpoint.name == f"svc-{unique}{PUBLISHING_SUFFIX}"
        assert await close_broker_connections(f"svc-{unique}") == 2
        with pytest.raises(BusError):
            await bus.publish_raw(
                routing_key="nothing.bound", body=b"{}", event_type="t", event_id="x", timeout=20
            )
    finally:
        await bus.close()


async def test_a_blocked_or_full_connection_refuses_publishes_until_it_lifts() -> None:
    # Nothing piles up in memory while RabbitMQ does not read (an alarm) or the socket is full.
    connection = PublishConnection()
    connection.data_received(_frame(spec.Connection.Blocked("low on memory"), 0))
    assert connection.blocked == "low on memory"
    with pytest.raises(Held, match="low on memory"):
        connection.publish("ex", "k", b"", b"{}", "m1")
    connection.data_received(_frame(spec.Connection.Unblocked(), 0))
    assert connection.blocked is None and connection.writable.is_set()
    connection.publish("ex", "k", b"", b"{}", "m1")
    connection.pause_writing()
    with pytest.raises(Held, match="send buffer is full"):
        connection.publish("ex", "k", b"", b"{}", "m2")
    connection.resume_writing()
    connection.publish("ex", "k", b"", b"{}", "m2")
    assert connection.in_flight == 2 and not connection.lost.done()


@pytest.mark.integration
async def test_a_link_is_ready_again_once_the_block_lifts(rabbitmq_url: str, unique: str) -> None:
    link = PublishLink(rabbitmq_url, f"held-{unique}")
    await link.open()
    try:
        assert link._connection is not None
        connection = link._connection
        connection.data_received(_frame(spec.Connection.Blocked("disk"), 0))
        assert not link.ready and not await link.wait_ready(0.05)
        waiting = asyncio.create_task(link.wait_ready(10))
        connection.data_received(_frame(spec.Connection.Unblocked(), 0))
        assert await waiting
    finally:
        await link.close()


@pytest.mark.integration
async def test_a_body_larger_than_a_frame_arrives_whole(bus: Bus) -> None:
    # Past the broker's frame size (128 KiB): the body goes out in several frames.
    sink = QueueSpec(service="big", routing_keys=["error.#"], retry_tiers_ms=())
    await bus.declare_service_queue(sink)
    event = ErrorReported(service="t", error_type="k", message="é" * 200_000)
    await bus.publish(event)
    channel = await bus.connection.channel()
    try:
        queue = await channel.get_queue(bus.names.queue("big"), ensure=False)
        message = await queue.get(timeout=10)
        assert message.body == event.model_dump_json().encode()
        assert message.message_id == event.event_id
        await message.ack()
    finally:
        await channel.close()
