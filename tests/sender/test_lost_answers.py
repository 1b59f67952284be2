"""Sends whose answer from Meta is lost: never released as unsent, and their statuses are filed
under the right message; a try cancelled before its request left gives its claim back (the
handlers over fakes)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sender.sending import handle_send
from sender.statuses import handle_status
from sender.store import Claim, NewMessage
from shared.bus import RetryLater
from shared.events import Identity, MessageSent, MessageStatus, SendMessage
from shared.send_ref import SendRef
from tests.helpers import wait_for
from tests.sender.fakes import NUMBER, TO, World, text


def tagged_status(wamid: str, name: str, command_id: str, attempt: int) -> MessageStatus:
    return MessageStatus(
        phone_number_id=NUMBER,
        wamid=wamid,
        status=name,
        timestamp=datetime.now(UTC),
        recipient=Identity(wa_id=TO[1:]),
        command_id=command_id,
        send_attempt=attempt,
    )


async def interrupted_mid_call(w: World, command_id_text: str = "hola") -> str:
    """A send whose handler is cancelled while Meta has the request; returns the command id."""
    w.graph.delay = 5.0
    command = text(command_id_text)
    task = asyncio.create_task(handle_send(w.deps, command))
    await wait_for(lambda: w.graph.sent, timeout=5, message="the call to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    w.graph.delay = 0.0
    return command.event_id


async def interrupted_past_its_hold(w: World, *, unknown_outcome_seconds: float) -> str:
    """A send interrupted mid-call whose hold is over: the next try takes it over."""
    w.deps.config = replace(
        w.deps.config, request_timeout=0.0, unknown_outcome_seconds=unknown_outcome_seconds
    )
    command_id = await interrupted_mid_call(w)
    await wait_for(
        lambda: _lease_over(w, command_id), timeout=5, message="the interrupted try's hold"
    )
    return command_id


def redelivery(command_id: str) -> SendMessage:
    """The command again, as the broker redelivers it."""
    return text("hola").model_copy(update={"event_id": command_id})


async def test_a_send_cancelled_mid_call_is_not_released() -> None:
    w = World()
    w.deps.config = replace(w.deps.config, request_timeout=2.0)
    command_id = await interrupted_mid_call(w)
    row = await w.store.get(command_id)
    assert row is not None and row.status == "sending"
    # The next try may take over once the call would have timed out, plus the status window.
    assert 1.5 < row.lease_left <= 2.0 + w.deps.config.unknown_outcome_seconds
    assert w.graph.refs == [SendRef(command_id, 1)]
    with pytest.raises(RetryLater, match="in flight"):
        await handle_send(w.deps, redelivery(command_id))
    assert len(w.graph.sent) == 1


async def test_the_try_that_takes_over_waits_for_the_first_ones_status() -> None:
    w = World()
    command_id = await interrupted_past_its_hold(w, unknown_outcome_seconds=0.3)
    takeover = asyncio.create_task(handle_send(w.deps, redelivery(command_id)))
    await wait_for(
        lambda: w.store.rows[command_id].attempts == 2, timeout=5, message="the takeover's claim"
    )
    assert not takeover.done()  # it waits for a status before sending again
    await handle_status(w.deps, tagged_status("wamid.first", "sent", command_id, 1))
    await takeover
    assert len(w.graph.sent) == 1  # not sent again
    [sent] = {e.event_id: e for e in w.of(MessageSent)}.values()
    assert sent.wamid == "wamid.first"
    assert w.metric("whatsapp_messages_sent_total", phone_number_id=NUMBER, kind="text") == 1


async def test_without_a_status_the_takeover_sends_it_as_a_second_try() -> None:
    w = World()
    command_id = await interrupted_past_its_hold(w, unknown_outcome_seconds=0.05)
    await handle_send(w.deps, redelivery(command_id))
    assert w.graph.refs == [SendRef(command_id, 1), SendRef(command_id, 2)]
    row = await w.store.get(command_id)
    assert row is not None and row.status == "accepted"


async def test_a_second_acceptance_of_one_command_is_counted_and_its_statuses_ignored() -> None:
    w = World()
    command = text("hola")
    await handle_send(w.deps, command)
    row = await w.store.get(command.event_id)
    assert row is not None and row.wamid == "wamid.fake1"
    # The first try's answer was lost, it was sent again, and now its statuses come in.
    for name in ("sent", "delivered"):
        await handle_status(w.deps, tagged_status("wamid.lost", name, command.event_id, 1))
    labels = {"phone_number_id": NUMBER, "kind": "text"}
    assert w.metric("whatsapp_messages_duplicated_total", **labels) == 1
    assert w.metric("whatsapp_messages_sent_total", **labels) == 0
    row = await w.store.get(command.event_id)
    assert row is not None and row.wamid == "wamid.fake1"  # the first wamid learnt stays
    await handle_status(w.deps, tagged_status("wamid.fake1", "sent", command.event_id, 2))
    assert w.metric("whatsapp_messages_sent_total", **labels) == 1


async def test_an_acceptance_after_adoption_keeps_the_adopted_wamid() -> None:
    w = World()
    w.graph.delay = 0.3
    command = text("hola")
    task = asyncio.create_task(handle_send(w.deps, command))
    await wait_for(lambda: w.graph.sent, timeout=5, message="the call to start")
    # The status of this very call arrives before its answer (Meta is fast, our side slow).
    await handle_status(w.deps, tagged_status("wamid.early", "sent", command.event_id, 1))
    await task
    row = await w.store.get(command.event_id)
    assert row is not None and row.wamid == "wamid.early" and row.status == "sent"


def answer_claims_late(w: World) -> asyncio.Event:
    """The store takes a claimed row at once but answers only once the event is set: the
    statement is in flight (a patient batch, the database's round trip)."""
    answer = asyncio.Event()
    claim = w.store.claim

    async def late(message: NewMessage, lease_seconds: float, *, patient: bool = False) -> Claim:
        taken = await claim(message, lease_seconds, patient=patient)
        await answer.wait()
        return taken

    w.store.claim = late  # type: ignore[method-assign]
    return answer


async def cancelled_while_claiming(w: World, command_id: str, attempt: int) -> None:
    answer = answer_claims_late(w)
    task = asyncio.create_task(handle_send(w.deps, redelivery(command_id)))
    await wait_for(
        lambda: command_id in w.store.rows and w.store.rows[command_id].attempts == attempt,
        timeout=5,
        message="the claim to take the row",
    )
    task.cancel()  # the broker connection went while the claim was being made
    answer.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_try_cancelled_while_its_claim_is_made_gives_the_row_back() -> None:
    w = World()
    command_id = text("hola").event_id
    await cancelled_while_claiming(w, command_id, attempt=1)
    row = await w.store.get(command_id)
    assert row is not None and row.status == "pending"  # not held for the lease
    assert w.graph.sent == []
    # The redelivery sends it at once: no lease to wait out, no takeover's wait.
    await handle_send(w.deps, redelivery(command_id))
    assert len(w.graph.sent) == 1
    assert w.store.rows[command_id].status == "accepted"


async def test_a_takeover_cancelled_while_its_claim_is_made_keeps_the_row() -> None:
    # The row was taken over from a try that may have reached Meta: given back as pending,
    # the next try would send without waiting for that try's status.
    w = World()
    command_id = await interrupted_past_its_hold(w, unknown_outcome_seconds=0.3)
    await cancelled_while_claiming(w, command_id, attempt=2)
    row = await w.store.get(command_id)
    assert row is not None and row.status == "sending"
    assert len(w.graph.sent) == 1  # the first try's, never a second


async def _lease_over(w: World, command_id: str) -> bool:
    row = await w.store.get(command_id)
    return row is not None and row.lease_left <= 0


async def test_an_acceptance_the_database_cannot_take_at_once_is_recorded_when_it_can() -> None:
    w = World()
    real = w.store.accepted
    failures = [ConnectionError("database restarting"), ConnectionError("still down")]

    async def flaky(*args: object, **kwargs: object) -> None:
        if failures:
            raise failures.pop(0)
        await real(*args, **kwargs)  # type: ignore[arg-type]

    w.store.accepted = flaky  # type: ignore[method-assign]
    command = text("hola")
    await handle_send(w.deps, command)
    row = await w.store.get(command.event_id)
    assert row is not None and row.status == "accepted" and row.wamid == "wamid.fake1"
    assert len(w.graph.sent) == 1 and failures == []


async def test_a_status_of_a_wamid_adopted_meanwhile_is_applied_not_counted_twice() -> None:
    w = World()
    command_id = await interrupted_mid_call(w)
    await handle_status(w.deps, tagged_status("wamid.lost", "sent", command_id, 1))
    # As when delivered's apply_status ran before sent's adoption committed.
    assert (await w.store.adopt_sent("wamid.lost", command_id)).outcome == "known"
    await handle_status(w.deps, tagged_status("wamid.lost", "delivered", command_id, 1))
    labels = {"phone_number_id": NUMBER, "kind": "text"}
    assert w.metric("whatsapp_messages_duplicated_total", **labels) == 0
    assert w.metric("whatsapp_messages_delivered_total", **labels) == 1
