"""Publishes written together (shared.publishing, shared.confirms): the properties as pamqp
writes them, and on a real RabbitMQ one socket write for a turn's publishes, each with its own
broker answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands as spec

from shared.bus import Bus, BusError, BusUnavailable, QueueSpec, RawPublish
from shared.events import ErrorReported
from shared.publishing import DEADLINE_TICK_SECONDS, Deadlines, expired, message_properties
from tests.helpers import wait_for

ids = st.text(max_size=90)


@given(
    message_id=ids,
    message_type=ids,
    correlation_id=st.none() | ids,
    headers=st.dictionaries(
        st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | ids, max_size=2
    ),
)
def test_properties_are_written_as_pamqp_writes_them(
    message_id: str, message_type: str, correlation_id: str | None, headers: dict[str, Any]
) -> None:
    expected = spec.Basic.Properties(
        delivery_mode=2,
        content_type="application/json",
        message_id=message_id,
        message_type=message_type,
        correlation_id=correlation_id,
        headers=headers,
    ).marshal()
    assert message_properties(message_id, message_type, correlation_id, headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"x-mensajero-key": "+5491135722871"},
        {"b": "é", "a": "", "x-death-count": 3},
        {"k" * 129: "a key pamqp truncates"},
        {"é" * 65: "two-byte characters split at the limit"},
    ],
)
def test_header_tables_are_written_as_pamqp_writes_them(headers: dict[str, Any]) -> None:
    expected = spec.Basic.Properties(
        delivery_mode=2, content_type="application/json", message_id="m", message_type="t",
        headers=headers,
    ).marshal()  # fmt: skip
    assert message_properties("m", "t", None, headers) == expected


def test_a_short_string_past_amqps_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        message_properties("é" * 128, "t", None, {})


@pytest.mark.integration
async def test_a_turns_publishes_are_one_write_each_answered_on_its_own(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bus.declare_service_queue(QueueSpec(service="svc", routing_keys=["error.#"]))
    assert bus._link is not None and bus._link._connection is not None
    connection = bus._link._connection
    writes: list[int] = []
    write = connection._write

    def counted(data: bytes) -> None:
        writes.append(len(data))
        write(data)

    monkeypatch.setattr(connection, "_write", counted)
    routed = [ErrorReported(service="t", error_type="k", message=str(n)) for n in range(150)]
    results = await asyncio.gather(
        *(bus.publish(event) for event in routed),
        *(
            bus.publish_raw(
                routing_key="nothing.bound",
                body=b"{}",
                event_type="nothing.bound",
                event_id=f"unbound-{n}",
            )
            for n in range(150)
        ),
        return_exceptions=True,
    )
    monkeypatch.undo()
    assert results[:150] == [None] * 150
    assert all(isinstance(r, BusError) and "unroutable" in str(r) for r in results[150:])
    assert 1 <= len(writes) <= 3, f"{len(writes)} writes for 300 publishes"
    assert connection.in_flight == 0
    inspect = await bus.connection.channel()
    try:
        declared = await inspect.declare_queue(bus.names.queue("svc"), passive=True)
        assert declared.declaration_result.message_count == 150
    finally:
        await inspect.close()


@pytest.mark.integration
async def test_many_publishes_of_one_id_at_once_each_get_their_own_answer(bus: Bus) -> None:
    # One id several times in one call and in another in flight (Meta repeating a webhook):
    # returns are matched by message id, so each waits its turn and gets its own answer.
    await bus.declare_service_queue(QueueSpec(service="svc", routing_keys=["error.#"]))
    routed = RawPublish("error.x", b"{}", "error.x", "same-id")
    unbound = RawPublish("nothing.bound", b"{}", "nothing.bound", "same-id")
    first, second = await asyncio.gather(
        bus.publish_raw_many([routed, unbound, routed, unbound]),
        bus.publish_raw_many([unbound, routed]),
    )
    kinds = [None if r is None else "unroutable" in str(r) for r in [*first, *second]]
    assert kinds == [None, True, None, True, True, None]
    assert "same-id" not in bus._publishing


# --------------------------------------------------------------------------- deadlines


async def test_a_confirmation_past_its_deadline_is_given_up_and_told_apart() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    late: asyncio.Future[None] = loop.create_future()
    answered: asyncio.Future[None] = loop.create_future()
    deadline = time.monotonic() + 2 * DEADLINE_TICK_SECONDS
    deadlines.watch(late, deadline)
    deadlines.watch(answered, deadline)
    answered.set_result(None)
    with pytest.raises(asyncio.CancelledError):
        await late
    assert time.monotonic() >= deadline  # never given up before its deadline
    assert expired(late, deadline)  # given up by the deadlines, not by this task
    assert answered.result() is None  # answered in time: left alone
    await wait_for(lambda: deadlines._timer is None, message="no tick once nothing waits")


async def test_a_waiters_own_cancellation_is_not_an_expired_deadline() -> None:
    deadlines = Deadlines()
    confirmation: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    deadline = time.monotonic() + 60
    deadlines.watch(confirmation, deadline)
    seen: list[bool] = []

    async def waiter() -> None:
        try:
            await confirmation
        except asyncio.CancelledError:
            seen.append(expired(confirmation, deadline))
            raise

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # the waiter awaits the confirmation
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]
    deadlines.close()


async def test_a_publish_never_answered_fails_at_its_deadline() -> None:
    # The link takes the publish but the broker never answers it (a stalled broker).
    class SilentLink:
        connected = True

        def publish(self, *_args: object) -> asyncio.Future[None]:
            return asyncio.get_running_loop().create_future()

    bus = Bus("amqp://127.0.0.1/", "test.deadline")
    bus._link = SilentLink()  # type: ignore[assignment]
    with pytest.raises(BusUnavailable, match="not confirmed before the deadline"):
        await bus.publish_raw(
            routing_key="k", body=b"{}", event_type="t", event_id="e1", timeout=0.05
        )
    assert "e1" not in bus._publishing


def test_deadlines_keep_working_when_used_again_in_a_new_event_loop() -> None:
    # A tick left pending in a loop that has ended must not keep the next loop's waits from
    # being given up.
    deadlines = Deadlines()

    async def one_wait(seconds: float) -> bool:
        confirmation: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = time.monotonic() + seconds
        deadlines.watch(confirmation, deadline)
        try:
            await confirmation
        except asyncio.CancelledError:
            return expired(confirmation, deadline)
        return False

    first = asyncio.new_event_loop()
    try:
        waiting = first.create_task(one_wait(60))
        first.run_until_complete(asyncio.sleep(0))  # it waits; the loop ends with its tick due
        waiting.cancel()
        first.run_until_complete(asyncio.gather(waiting, return_exceptions=True))
    finally:
        first.close()
    second = asyncio.new_event_loop()
    try:
        given_up = asyncio.wait_for(one_wait(2 * DEADLINE_TICK_SECONDS), timeout=10)
        assert second.run_until_complete(given_up)
    finally:
        second.close()
