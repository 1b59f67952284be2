"""Copying a user's media (``copy_from_media_id``) against the real sandbox, RabbitMQ and
PostgreSQL: the sender looks the id up, downloads it with the token, uploads it again and sends
the new id; unknown or deleted media fails with a clear reason; an expired token holds it."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
from aiohttp import web

from shared.events import ErrorReported, MessageFailed, SendMessage
from tests.helpers import wait_for
from tests.sender.conftest import NUMBER, TOKEN, Stack

pytestmark = pytest.mark.integration

CUSTOMER = "+5491135722871"
AGENT = "+5491100000000"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Larger than one network read, so a download that stopped at the first chunk would show.
PHOTO = b"\xff\xd8\xff\xe0" + os.urandom(300 * 1024)


def copy(media_id: str, kind: str = "image", to: str = AGENT, **extra: Any) -> SendMessage:
    content = {"kind": kind, "copy_from_media_id": media_id, **extra}
    return SendMessage.model_validate({"to": to, "content": content})


async def sends_media(stack: Stack, phone: str, kind: str, media: dict[str, Any]) -> str:
    """The phone sends media to the business; the media id Meta gives it (from the webhook)."""
    body = {"from": phone, kind: media}
    async with stack.http.post(f"{stack.sandbox_url}/_sandbox/inbound", json=body) as r:
        assert r.status == 200, await r.text()
        wamid = (await r.json())["wamid"]
    async with stack.http.get(f"{stack.sandbox_url}/_sandbox/webhooks") as r:
        deliveries = (await r.json())["webhooks"]
    for delivery in deliveries:
        for entry in delivery["body"].get("entry", []):
            for change in entry.get("changes", []):
                for message in change.get("value", {}).get("messages", []):
                    if message["id"] == wamid:
                        return str(message[kind]["id"])
    raise AssertionError(f"no webhook for {wamid}")


async def media_at_meta(stack: Stack, media_id: str) -> tuple[bytes, str]:
    """What anyone with the token gets for a media id: GET its URL, then download it."""
    async with stack.http.get(f"{stack.sandbox_url}/v23.0/{media_id}", headers=AUTH) as r:
        assert r.status == 200, await r.text()
        info = await r.json()
    async with stack.http.get(info["url"], headers=AUTH) as r:
        assert r.status == 200, await r.text()
        data = await r.read()
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    return data, str(info["mime_type"])


async def test_a_customers_photo_is_copied_to_another_phone_under_a_new_id(
    stack: Stack, sender: web.Application
) -> None:
    original = await sends_media(
        stack,
        CUSTOMER,
        "image",
        {"data_base64": base64.b64encode(PHOTO).decode(), "mime_type": "image/jpeg"},
    )
    command = await stack.publish(copy(original, caption="#K7P · Juan:\nmirá"))
    sent = await stack.sent(command)

    [received] = await wait_for(lambda: stack.phone(AGENT), message="the agent's message")
    assert received["wamid"] == sent.wamid and received["type"] == "image"
    image = received["body"]["image"]
    assert image["caption"] == "#K7P · Juan:\nmirá"
    assert image["id"] != original  # a new upload, not the inbound id
    assert await media_at_meta(stack, image["id"]) == (PHOTO, "image/jpeg")
    assert await media_at_meta(stack, original) == (PHOTO, "image/jpeg")


async def test_documents_and_voice_notes_keep_their_bytes_and_filename(
    stack: Stack, sender: web.Application
) -> None:
    pdf = b"%PDF-1.4\n" + os.urandom(2048) + b"\n%%EOF\n"
    doc = await sends_media(
        stack,
        CUSTOMER,
        "document",
        {
            "data_base64": base64.b64encode(pdf).decode(),
            "mime_type": "application/pdf",
            "filename": "factura.pdf",
        },
    )
    # A voice note: the sandbox, like Meta, reports "audio/ogg; codecs=opus".
    voice = await sends_media(stack, CUSTOMER, "audio", {"voice": True})
    doc_cmd = await stack.publish(
        copy(doc, kind="document", filename="factura.pdf", caption="la factura")
    )
    voice_cmd = await stack.publish(copy(voice, kind="audio"))
    await stack.sent(doc_cmd)
    await stack.sent(voice_cmd)
    received = {m["type"]: m["body"] for m in await stack.phone(AGENT)}
    assert received["document"]["document"]["filename"] == "factura.pdf"
    assert await media_at_meta(stack, received["document"]["document"]["id"]) == (
        pdf,
        "application/pdf",
    )
    new_voice, mime = await media_at_meta(stack, received["audio"]["audio"]["id"])
    assert new_voice == (await media_at_meta(stack, voice))[0] and mime == "audio/ogg"


async def test_unknown_or_deleted_media_fails_with_a_clear_reason(
    stack: Stack, sender: web.Application
) -> None:
    deleted = await sends_media(stack, CUSTOMER, "image", {})
    async with stack.http.delete(f"{stack.sandbox_url}/v23.0/{deleted}", headers=AUTH) as r:
        assert r.status == 200
    for media_id in (deleted, "1099999999999999"):
        failed = await stack.failed(await stack.publish(copy(media_id)))
        assert f"media to copy ({media_id}) is unknown to Meta or has expired" in failed.reason
        assert failed.error is not None and failed.error.code == 100
    assert await stack.phone(AGENT) == []
    assert stack.of(ErrorReported) == []  # not a bug: no alert


async def test_a_copy_waits_for_an_expired_token_then_goes_out(
    stack: Stack, sender: web.Application
) -> None:
    original = await sends_media(stack, CUSTOMER, "image", {})
    await stack.fault(expire_token=True)
    command = await stack.publish(copy(original))
    await wait_for(lambda: stack.of(ErrorReported), message="the token error report")
    await wait_for(
        lambda: (
            stack.metric(
                sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason="190"
            )
            >= 2
        ),
        message="failed probes",
    )
    assert stack.of(MessageFailed) == []
    await stack.fault(renew_token=True)
    await stack.sent(command, timeout=15)
    [received] = await stack.phone(AGENT)
    assert received["body"]["image"]["id"] != original


async def test_a_server_error_on_the_upload_is_retried(
    stack: Stack, sender: web.Application
) -> None:
    original = await sends_media(stack, CUSTOMER, "sticker", {})
    # Uploads (and sends) answer HTTP 500 with Meta's 131000 for a while.
    await stack.fault(http_500_rate=1.0)
    command = await stack.publish(copy(original, kind="sticker"))
    await wait_for(
        lambda: (
            stack.metric(
                sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason="131000"
            )
            >= 1
        ),
        message="a retried copy",
    )
    await stack.clear_faults()
    await stack.sent(command)
    [received] = await stack.phone(AGENT)
    assert received["body"]["sticker"]["id"] != original
