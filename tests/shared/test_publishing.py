"""Publishes written together (shared.publishing): the frames as pamqp writes them, and on a real
RabbitMQ one write-queue frame for a turn's publishes, each with its own broker answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pamqp.frame
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.header import ContentHeader

from shared.bus import Bus, BusError, QueueSpec
from shared.events import ErrorReported
from shared.publishing import content_header

short = st.none() | st.text(max_size=90) | st.just("")
tables: st.SearchStrategy[dict[str, int] | None] = (
    st.none() | st.just({}) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)


@given(
    content_type=short,
    correlation_id=short,
    message_id=short,
    message_type=short,
    app_id=short,
    delivery_mode=st.none() | st.integers(1, 2),
    priority=st.none() | st.integers(0, 9),
    headers=st.none()
    | st.just({})
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    number=st.integers(1, 2047),
    size=st.integers(0, 2**40),
)
def test_content_header_is_written_as_pamqp_writes_it(
    number: int, size: int, **properties: Any
) -> None:
    values = spec.Basic.Properties(**properties)
    assert content_header(number, size, values) == pamqp.frame.marshal(
        ContentHeader(0, size, values), number
    )


@pytest.mark.integration
async def test_a_turns_publishes_are_one_write_each_answered_on_its_own(bus: Bus) -> None:
    await bus.declare_service_queue(QueueSpec(service="svc", routing_keys=["error.#"]))
    channel = await bus._publishing_channel()
    queue = channel.write_queue
    puts: list[object] = []
    put_nowait = queue.put_nowait

    def counted(frame: Any) -> None:
        puts.append(frame)
        put_nowait(frame)

    queue.put_nowait = counted  # type: ignore[method-assign,assignment]
    try:
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
    finally:
        queue.put_nowait = put_nowait  # type: ignore[method-assign]
    assert results[:150] == [None] * 150
    assert all(isinstance(r, BusError) and "unroutable" in str(r) for r in results[150:])
    assert 1 <= len(puts) <= 3, f"{len(puts)} writes for 300 publishes"
    inspect = await bus.connection.channel()
    try:
        declared = await inspect.declare_queue(bus.names.queue("svc"), passive=True)
        assert declared.declaration_result.message_count == 150
    finally:
        await inspect.close()
