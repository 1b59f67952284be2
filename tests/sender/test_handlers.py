"""The handlers over fakes: results, retries, fallbacks, circuits, statuses and counting."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sender.graph import GraphUnavailable
from sender.sending import handle_send
from sender.statuses import handle_status
from shared.bus import RetryLater
from shared.events import (
    ErrorReported,
    Identity,
    MessageFailed,
    MessageSent,
    MessageStatus,
    MetaError,
    SendMessage,
)
from tests.fakes.sender import meta_error
from tests.helpers import wait_for
from tests.sender.fakes import NUMBER, TO, World, text


def status(wamid: str, name: str, code: int | None = None) -> MessageStatus:
    return MessageStatus(
        phone_number_id=NUMBER,
        wamid=wamid,
        status=name,
        timestamp=datetime.now(UTC),
        recipient=Identity(wa_id=TO[1:]),
        errors=[MetaError(code=code, title="t")] if code is not None else [],
    )


async def test_text_is_sent_logged_and_published() -> None:
    w = World()
    cmd = text(to="whatsapp:+5491135722871")
    await handle_send(w.deps, cmd)
    assert w.graph.sent == [
        (
            NUMBER,
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": TO,
                "type": "text",
                "text": {"body": "hola", "preview_url": False},
            },
        )
    ]
    [sent] = w.of(MessageSent)
    assert sent.command_id == cmd.event_id and sent.wamid == "wamid.fake1" and sent.to == TO
    row = await w.store.get(cmd.event_id)
    assert row is not None and row.status == "accepted" and row.wamid == "wamid.fake1"
    assert w.metric("whatsapp_messages_accepted_total", phone_number_id=NUMBER, kind="text") == 1


async def test_duplicate_command_sends_once_and_republishes_same_event() -> None:
    w = World()
    cmd = text()
    await handle_send(w.deps, cmd)
    await handle_send(w.deps, cmd, attempt=2)
    assert len(w.graph.sent) == 1
    first, second = w.of(MessageSent)
    assert first.event_id == second.event_id


async def test_invalid_command_fails_without_a_call() -> None:
    w = World()
    await handle_send(w.deps, text("x" * 5000))
    assert w.graph.sent == []
    [failed] = w.of(MessageFailed)
    assert "limit is 4096" in failed.reason
    assert (
        w.metric(
            "whatsapp_messages_failed_total",
            phone_number_id=NUMBER,
            kind="text",
            error_code="validation",
        )
        == 1
    )


async def test_retryable_error_is_retried_then_sent() -> None:
    w = World()
    w.graph.then(meta_error(131000), GraphUnavailable("timeout"), None)
    cmd = text()
    with pytest.raises(RetryLater) as first:
        await handle_send(w.deps, cmd)
    assert first.value.delay is not None and 0 < first.value.delay <= 0.05
    row = await w.store.get(cmd.event_id)
    assert row is not None and row.status == "pending" and row.error is not None
    with pytest.raises(RetryLater) as second:
        await handle_send(w.deps, cmd, attempt=2)
    assert second.value.delay is not None and second.value.delay <= 0.1
    await handle_send(w.deps, cmd, attempt=3)
    assert len(w.graph.sent) == 3 and len(w.of(MessageSent)) == 1
    assert w.metric("whatsapp_send_retries_total", phone_number_id=NUMBER, reason="131000") == 1


async def test_retryable_error_past_validity_fails() -> None:
    w = World()
    w.graph.then(meta_error(130429))
    cmd = text(valid_until=datetime.now(UTC) + timedelta(milliseconds=1))
    await handle_send(w.deps, cmd)
    [failed] = w.of(MessageFailed)
    assert "gave up" in failed.reason and failed.error is not None
    assert failed.error.code == 130429


async def test_expired_command_fails_with_last_error() -> None:
    w = World()
    cmd = text(occurred_at=datetime.now(UTC) - timedelta(hours=5))
    await handle_send(w.deps, cmd)
    [failed] = w.of(MessageFailed)
    assert "validity period ended" in failed.reason and w.graph.sent == []


async def test_permanent_error_fails_and_alerts_for_bug_codes() -> None:
    w = World()
    w.graph.then(meta_error(131009, "Parameter value is not valid", "bad"))
    await handle_send(w.deps, text())
    [failed] = w.of(MessageFailed)
    assert failed.error is not None and failed.error.code == 131009
    assert failed.error.title == "Parameter value is not valid" and failed.error.details == "bad"
    [alert] = w.of(ErrorReported)
    assert alert.meta_code == 131009 and alert.service == "sender"


async def test_undeliverable_fails_without_alert() -> None:
    w = World()
    w.graph.then(meta_error(131026))
    await handle_send(w.deps, text())
    assert len(w.of(MessageFailed)) == 1 and w.of(ErrorReported) == []


async def test_outside_window_uses_fallback_template() -> None:
    w = World()
    w.graph.then(meta_error(131047))
    cmd = text(fallback_template={"name": "hello_world", "language": "en_US"})
    await handle_send(w.deps, cmd)
    assert w.graph.sent[1][1]["type"] == "template"
    [sent] = w.of(MessageSent)
    assert sent.used_fallback_template


async def test_outside_window_without_fallback_fails() -> None:
    w = World()
    w.graph.then(meta_error(131047))
    await handle_send(w.deps, text())
    [failed] = w.of(MessageFailed)
    assert "24-hour" in failed.reason and "no fallback" in failed.reason


async def test_window_closed_reported_after_acceptance_sends_the_fallback() -> None:
    # How Meta usually says it: the send is accepted, then a failed status carries 131047.
    w = World()
    cmd = text(fallback_template={"name": "hello_world", "language": "en_US"})
    await handle_send(w.deps, cmd)
    [first] = w.of(MessageSent)
    assert not first.used_fallback_template
    window_closed = status(first.wamid, "failed", 131047)
    await handle_status(w.deps, window_closed)
    assert [body["type"] for _, body in w.graph.sent] == ["text", "template"]
    _, second = w.of(MessageSent)
    assert second.used_fallback_template and second.wamid != first.wamid
    assert second.event_id != first.event_id and second.command_id == cmd.event_id
    # Meta repeats the status, and reports on the old wamid: nothing more goes out.
    await handle_status(w.deps, window_closed, attempt=2)
    await handle_status(w.deps, status(first.wamid, "read"))
    assert len(w.graph.sent) == 2 and w.of(MessageFailed) == []
    for name in ("sent", "delivered"):
        await handle_status(w.deps, status(second.wamid, name))
    row = await w.store.get(cmd.event_id)
    assert row is not None and row.status == "delivered" and row.wamid == second.wamid
    labels = {"phone_number_id": NUMBER, "kind": "text"}
    assert w.metric("whatsapp_messages_delivered_total", **labels) == 1
    assert w.metric("whatsapp_messages_failed_total", **labels, error_code="131047") == 0
    assert (
        w.metric("whatsapp_send_retries_total", phone_number_id=NUMBER, reason="131047_fallback")
        == 1
    )


async def test_window_closed_after_acceptance_without_fallback_fails() -> None:
    w = World()
    cmd = text()
    await handle_send(w.deps, cmd)
    wamid = w.of(MessageSent)[0].wamid
    await handle_status(w.deps, status(wamid, "failed", 131047))
    [failed] = w.of(MessageFailed)
    assert failed.wamid == wamid and failed.error is not None and failed.error.code == 131047
    assert len(w.graph.sent) == 1


async def test_pair_limit_backs_off_only_that_recipient() -> None:
    w = World()
    w.graph.then(meta_error(131056))
    with pytest.raises(RetryLater):
        await handle_send(w.deps, text())
    with pytest.raises(RetryLater, match="backing off"):
        await handle_send(w.deps, text())  # same recipient: held before any call
    await handle_send(w.deps, text(to="+5491100000001"))  # another recipient goes
    assert len(w.graph.sent) == 2


async def test_local_pair_bucket_holds_the_46th_message() -> None:
    w = World()
    for _ in range(45):
        await handle_send(w.deps, text())
    with pytest.raises(RetryLater, match="pair limit"):
        await handle_send(w.deps, text())
    assert len(w.graph.sent) == 45


async def test_token_failure_opens_circuit_reports_once_and_recovers() -> None:
    w = World()
    w.graph.then(meta_error(190), meta_error(190))
    first, second = text(), text(to="+5491100000002")
    with pytest.raises(RetryLater):
        await handle_send(w.deps, first)
    with pytest.raises(RetryLater, match="token"):
        await handle_send(w.deps, second)  # held: no call
    assert len(w.graph.sent) == 1
    assert len(w.of(ErrorReported)) == 1 and w.of(MessageFailed) == []
    circuit = w.deps.circuits.for_number(NUMBER)
    circuit.next_probe_at = 0  # probe time
    with pytest.raises(RetryLater):
        await handle_send(w.deps, first)  # the probe: still failing
    assert len(w.of(ErrorReported)) == 1
    circuit.next_probe_at = 0
    await handle_send(w.deps, second)  # the probe works: closed
    await handle_send(w.deps, first)
    assert len(w.of(MessageSent)) == 2 and circuit.state == "closed"


async def test_lost_answer_is_recovered_from_the_status_webhook() -> None:
    w = World()
    w.graph.then(GraphUnavailable("the Graph API did not answer in time"))
    cmd = text()
    with pytest.raises(RetryLater) as retry:
        await handle_send(w.deps, cmd)
    assert retry.value.delay is not None and retry.value.delay >= 0.08
    # Meta had accepted it: its status names the recipient.
    await handle_status(w.deps, status("wamid.lost", "sent"))
    [sent] = w.of(MessageSent)
    assert sent.command_id == cmd.event_id and sent.wamid == "wamid.lost"
    await handle_send(w.deps, cmd, attempt=2)  # the retry finds it done: no second send
    assert len(w.graph.sent) == 1
    assert w.metric("whatsapp_messages_sent_total", phone_number_id=NUMBER, kind="text") == 1


async def test_upload_from_url_then_send_by_id() -> None:
    w = World()
    w.graph.downloads["https://e.com/a.png"] = (b"png", "image/png")
    media_cmd = SendMessage.model_validate(
        {
            "to": TO,
            "content": {"kind": "image", "upload_url": "https://e.com/a.png", "caption": "c"},
        }
    )
    await handle_send(w.deps, media_cmd)
    assert w.graph.uploads == [(NUMBER, b"png", "image/png")]
    assert w.graph.sent[0][1]["image"] == {"id": "media1", "caption": "c"}


def copy(media_id: str = "4490001", kind: str = "image", **extra: str) -> SendMessage:
    content = {"kind": kind, "copy_from_media_id": media_id, **extra}
    return SendMessage.model_validate({"to": TO, "content": content})


async def test_copy_fetches_from_meta_uploads_and_sends_the_new_id_once() -> None:
    w = World()
    w.graph.media["4490001"] = (b"\x89PNG-photo", "image/jpeg")
    cmd = copy(caption="#1 · Ana:\nmirá")
    await handle_send(w.deps, cmd)
    assert w.graph.fetched == ["4490001"]
    assert w.graph.uploads == [(NUMBER, b"\x89PNG-photo", "image/jpeg")]
    assert w.graph.sent[0][1]["image"] == {"id": "media1", "caption": "#1 · Ana:\nmirá"}
    row = await w.store.get(cmd.event_id)
    assert row is not None and row.status == "accepted"
    # A redelivered command neither fetches, uploads nor sends again.
    await handle_send(w.deps, cmd, attempt=2)
    assert len(w.graph.fetched) == 1 and len(w.graph.uploads) == 1 and len(w.graph.sent) == 1
    first, second = w.of(MessageSent)
    assert first.event_id == second.event_id


async def test_copy_uploads_the_bare_mime_type() -> None:
    w = World()
    w.graph.media["v1"] = (b"OggS", "audio/ogg; codecs=opus")
    await handle_send(w.deps, copy("v1", kind="audio"))
    assert w.graph.uploads == [(NUMBER, b"OggS", "audio/ogg")]
    assert w.graph.sent[0][1]["audio"] == {"id": "media1"}


async def test_copy_of_unknown_or_expired_media_fails_clearly_without_alert() -> None:
    w = World()
    await handle_send(w.deps, copy("gone-1"))
    [failed] = w.of(MessageFailed)
    assert "media to copy (gone-1) is unknown to Meta or has expired" in failed.reason
    assert failed.error is not None and failed.error.code == 100
    assert w.graph.uploads == [] and w.graph.sent == [] and w.of(ErrorReported) == []
    assert (
        w.metric(
            "whatsapp_messages_failed_total", phone_number_id=NUMBER, kind="image", error_code="100"
        )
        == 1
    )


async def test_copy_larger_than_the_limit_fails() -> None:
    w = World()
    w.deps.config = replace(w.deps.config, media_max_bytes=10)
    w.graph.media["big"] = (b"x" * 11, "image/png")
    await handle_send(w.deps, copy("big"))
    [failed] = w.of(MessageFailed)
    assert failed.error is not None and failed.error.code == 131053
    assert "larger than 10 bytes" in failed.reason and w.graph.uploads == []


async def test_copy_errors_follow_the_code_policy() -> None:
    w = World()
    w.graph.media["m"] = (b"data", "image/png")
    cmd = copy("m")
    # Retryable on the lookup/download, then on the upload: retried, then sent once.
    w.graph.fetch_script.extend([meta_error(131000), GraphUnavailable("reset")])
    w.graph.upload_script.append(meta_error(130429))
    for attempt in (1, 2, 3):
        with pytest.raises(RetryLater):
            await handle_send(w.deps, cmd, attempt=attempt)
    await handle_send(w.deps, cmd, attempt=4)
    assert len(w.graph.uploads) == 1 and len(w.graph.sent) == 1 and len(w.of(MessageSent)) == 1
    assert w.metric("whatsapp_send_retries_total", phone_number_id=NUMBER, reason="131000") == 1
    assert w.metric("whatsapp_send_retries_total", phone_number_id=NUMBER, reason="130429") == 1

    # A token failure on the lookup opens the number's circuit: held, not failed.
    other = copy("m")
    w.graph.fetch_script.append(meta_error(190))
    with pytest.raises(RetryLater):
        await handle_send(w.deps, other)
    assert w.deps.circuits.for_number(NUMBER).state != "closed"
    assert len(w.of(ErrorReported)) == 1 and w.of(MessageFailed) == []

    # Any other answer to the upload is final.
    w2 = World()
    w2.graph.media["m"] = (b"data", "image/png")
    w2.graph.upload_script.append(meta_error(131053, "Media upload error", "bad file"))
    await handle_send(w2.deps, copy("m"))
    [failed] = w2.of(MessageFailed)
    assert failed.error is not None and failed.error.code == 131053 and w2.graph.sent == []


async def test_statuses_count_once_and_never_regress() -> None:
    w = World()
    cmd = text()
    await handle_send(w.deps, cmd)
    wamid = w.of(MessageSent)[0].wamid
    for name in ("delivered", "sent", "delivered", "read", "sent", "read"):
        await handle_status(w.deps, status(wamid, name))
    row = await w.store.get(cmd.event_id)
    assert row is not None and row.status == "read"
    labels = {"phone_number_id": NUMBER, "kind": "text"}
    assert w.metric("whatsapp_messages_sent_total", **labels) == 1
    assert w.metric("whatsapp_messages_delivered_total", **labels) == 1
    assert w.metric("whatsapp_messages_read_total", **labels) == 1


async def test_late_failed_status_is_final_and_published() -> None:
    w = World()
    cmd = text()
    await handle_send(w.deps, cmd)
    wamid = w.of(MessageSent)[0].wamid
    await handle_status(w.deps, status(wamid, "delivered"))
    await handle_status(w.deps, status(wamid, "failed", 131026))
    await handle_status(w.deps, status(wamid, "read"))
    await handle_status(w.deps, status(wamid, "failed", 131026))
    row = await w.store.get(cmd.event_id)
    assert row is not None and row.status == "failed"
    failed = w.of(MessageFailed)
    assert {f.event_id for f in failed} == {failed[0].event_id} and failed[0].wamid == wamid
    assert (
        w.metric(
            "whatsapp_messages_failed_total",
            phone_number_id=NUMBER,
            kind="text",
            error_code="131026",
        )
        == 1
    )


async def test_status_for_unknown_wamid_waits_then_is_dropped() -> None:
    w = World()
    with pytest.raises(RetryLater):
        await handle_status(w.deps, status("wamid.unknown", "sent"))
    old = status("wamid.unknown", "sent").model_copy(
        update={"occurred_at": datetime.now(UTC) - timedelta(minutes=5)}
    )
    await handle_status(w.deps, old)


async def test_mark_read_has_no_pair_limit_and_no_sent_event() -> None:
    w = World()
    cmd = SendMessage.model_validate(
        {"to": "", "content": {"kind": "mark_read", "message_id": "wamid.IN", "typing": True}}
    )
    await handle_send(w.deps, cmd)
    assert w.graph.sent[0][1] == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN",
        "typing_indicator": {"type": "text"},
    }
    assert w.of(MessageSent) == []


async def test_claims_wait_to_share_a_statement_only_when_sends_are_queued() -> None:
    w = World()
    await handle_send(w.deps, text())
    assert w.store.patient_claims == 0  # idle: the claim goes at once
    pacer = w.deps.pacers.for_number(NUMBER)
    queued = [pacer.reserve() for _ in range(200)]  # 0.2 s of sends ahead at 1,000/s
    send = asyncio.ensure_future(handle_send(w.deps, text()))
    await wait_for(lambda: w.store.patient_claims == 1, message="a patient claim")
    for reservation in queued:
        pacer.drop(reservation)
    await send
    assert len(w.of(MessageSent)) == 2
    await pacer.close()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (131047, "window_closed"),  # no fallback template
        (131026, "rejected"),  # undeliverable: permanent
        (None, "not_sent"),  # the sender refused the command itself
    ],
)
async def test_a_failure_says_what_it_means_without_metas_code(
    answer: int | None, expected: str
) -> None:
    w = World()
    if answer is not None:
        w.graph.then(meta_error(answer))
        await handle_send(w.deps, text())
    else:
        await handle_send(w.deps, text("x" * 5000))
    [failed] = w.of(MessageFailed)
    assert failed.reason_code == expected


async def test_a_window_closed_after_acceptance_says_so_too() -> None:
    w = World()
    await handle_send(w.deps, text())
    await handle_status(w.deps, status(w.of(MessageSent)[0].wamid, "failed", 131047))
    [failed] = w.of(MessageFailed)
    assert failed.reason_code == "window_closed"
