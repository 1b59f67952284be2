"""The sender against the real sandbox, RabbitMQ and PostgreSQL: kinds, rules, failures."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from shared.events import ErrorReported, MessageFailed, MessageSent, SendMessage
from tests.helpers import wait_for
from tests.sender.conftest import NUMBER, PNG, Stack, deps_of
from tests.sender.test_validation import RULES

pytestmark = pytest.mark.integration

PHONE = "+5491135722871"
LABELS = {"phone_number_id": NUMBER, "kind": "text"}


def cmd(content: dict[str, Any], to: str = PHONE, **kw: Any) -> SendMessage:
    return SendMessage.model_validate({"to": to, "content": content, **kw})


def counted(stack: Stack, app: web.Application, name: str, n: int) -> Callable[[], bool]:
    return lambda: stack.metric(app, f"whatsapp_messages_{name}_total", **LABELS) == n


# An approved template of the sandbox's, for sends outside the 24-hour window.
REENGAGE = {
    "name": "reengage_customer",
    "language": "es_AR",
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
}


def text(body: str = "hola", to: str = PHONE, **kw: Any) -> SendMessage:
    return cmd({"kind": "text", "body": body}, to=to, **kw)


async def test_text_goes_out_and_statuses_are_counted_once(
    stack: Stack, sender: web.Application
) -> None:
    command = await stack.publish(text(to="whatsapp:+5491135722871"))
    sent = await stack.sent(command)
    [received] = await wait_for(lambda: stack.phone(PHONE), message="the phone's message")
    assert received["wamid"] == sent.wamid and received["body"]["text"]["body"] == "hola"
    for name in ("sent", "delivered", "read"):
        await wait_for(counted(stack, sender, name, 1), message=f"{name} counted")
    assert len((await stack.accepted())["messages"]) == 1


async def test_every_kind_reaches_the_phone(stack: Stack, sender: web.Application) -> None:
    inbound = await stack.inbound(PHONE, "hola")  # to quote, react to and mark read
    png = base64.b64encode(PNG).decode()
    header = {"type": "text", "text": "Encabezado"}
    kinds: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "text": ({"kind": "text", "body": "mirá https://example.com", "preview_url": True}, {}),
        "image_id": ({"kind": "image", "media_id": "1234", "caption": "foto"}, {}),
        "image_link": ({"kind": "image", "link": "https://example.com/a.jpg"}, {}),
        "video": ({"kind": "video", "link": "https://example.com/a.mp4", "caption": "v"}, {}),
        "audio": ({"kind": "audio", "media_id": "555"}, {}),
        "document": (
            {
                "kind": "document",
                "link": "https://example.com/f.pdf",
                "filename": "f.pdf",
                "caption": "factura",
            },
            {},
        ),
        "sticker": ({"kind": "sticker", "media_id": "777"}, {}),
        "upload_url": (
            {"kind": "image", "upload_url": f"{stack.relay_url}/files/pixel.png"},
            {},
        ),
        "upload_bytes": (
            {"kind": "image", "upload_base64": png, "mime_type": "image/png", "caption": "b"},
            {},
        ),
        "template": ({"kind": "template", "name": "hello_world", "language": "en_US"}, {}),
        "template_params": (
            {
                "kind": "template",
                "name": "handoff_agent_alert",
                "language": "es_AR",
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Ana"},
                            {"type": "text", "text": "quiero hablar"},
                        ],
                    },
                    {
                        "type": "button",
                        "sub_type": "quick_reply",
                        "index": "0",
                        "parameters": [{"type": "payload", "payload": "claim-1"}],
                    },
                ],
            },
            {},
        ),
        "buttons": (
            {
                "kind": "buttons",
                "body": "¿Seguimos?",
                "header": header,
                "footer": "pie",
                "buttons": [{"id": "si", "title": "Sí"}, {"id": "no", "title": "No"}],
            },
            {},
        ),
        "buttons_image": (
            {
                "kind": "buttons",
                "body": "¿Y esta?",
                "header": {
                    "type": "image",
                    "media": {"kind": "image", "upload_url": f"{stack.relay_url}/files/pixel.png"},
                },
                "buttons": [{"id": "ok", "title": "OK"}],
            },
            {},
        ),
        "list": (
            {
                "kind": "list",
                "body": "Elegí",
                "button": "Opciones",
                "header": "Menú",
                "sections": [
                    {"title": "A", "rows": [{"id": "a1", "title": "Uno", "description": "d"}]},
                    {"title": "B", "rows": [{"id": "b1", "title": "Dos"}]},
                ],
            },
            {},
        ),
        "cta_url": (
            {
                "kind": "cta_url",
                "body": "Tu pedido",
                "display_text": "Ver",
                "url": "https://example.com/p",
            },
            {},
        ),
        "location": (
            {"kind": "location", "latitude": -34.6, "longitude": -58.38, "name": "Obelisco"},
            {},
        ),
        "contacts": (
            {
                "kind": "contacts",
                "contacts": [
                    {"name": {"formatted_name": "Ana", "first_name": "Ana"}, "phones": []}
                ],
            },
            {},
        ),
        "reaction": ({"kind": "reaction", "message_id": inbound, "emoji": "👍"}, {}),
        "quote": ({"kind": "text", "body": "respondo"}, {"reply_to": inbound}),
    }
    phones = {name: f"+54911{4000000 + i:07d}" for i, name in enumerate(kinds)}
    phones["reaction"] = phones["quote"] = PHONE
    commands = {
        name: await stack.publish(cmd(content, to=phones[name], **extra))
        for name, (content, extra) in kinds.items()
    }
    read = await stack.publish(
        cmd({"kind": "mark_read", "message_id": inbound, "typing": True}, to="")
    )
    for name, command in commands.items():
        event = await stack.outcome(command)
        assert isinstance(event, MessageSent), (name, event)
    await wait_for(
        lambda: _read_receipt(stack, inbound), message="read receipt with typing indicator"
    )
    assert stack.of(MessageFailed, read.event_id) == []

    def body(name: str, record: list[dict[str, Any]]) -> dict[str, Any]:
        wamid = stack.of(MessageSent, commands[name].event_id)[0].wamid
        found: dict[str, Any] = next(r for r in record if r["wamid"] == wamid)["body"]
        return found

    records = {name: await stack.phone(phone) for name, phone in phones.items()}
    assert body("text", records["text"])["text"]["preview_url"] is True
    assert body("document", records["document"])["document"]["filename"] == "f.pdf"
    uploaded = body("upload_url", records["upload_url"])["image"]["id"]
    async with stack.http.get(
        f"{stack.sandbox_url}/v23.0/{uploaded}", headers={"Authorization": "Bearer sandbox-token"}
    ) as r:
        assert r.status == 200 and (await r.json())["mime_type"] == "image/png"
    assert "id" in body("upload_bytes", records["upload_bytes"])["image"]
    assert "id" in body("buttons_image", records["buttons_image"])["interactive"]["header"]["image"]
    quote = next(
        r
        for r in records["quote"]
        if r["wamid"] == stack.of(MessageSent, commands["quote"].event_id)[0].wamid
    )
    assert quote["context_id"] == inbound
    assert body("reaction", records["reaction"])["reaction"]["emoji"] == "👍"
    assert body("list", records["list"])["interactive"]["type"] == "list"
    assert body("cta_url", records["cta_url"])["interactive"]["type"] == "cta_url"
    template = next(r for r in records["template_params"])["template"]
    assert "Ana" in template["body"]


async def _read_receipt(stack: Stack, wamid: str) -> bool:
    receipts = (await stack.accepted())["read_receipts"]
    return any(r["message_id"] == wamid and r["typing_indicator"] for r in receipts)


async def test_invalid_commands_fail_without_any_api_call(
    stack: Stack, sender: web.Application
) -> None:
    commands = [
        (why, await stack.publish(cmd(content, **{"to": PHONE, **extra})))
        for _name, content, extra, why in RULES
    ]
    for why, command in commands:
        failed = await stack.failed(command)
        assert why in failed.reason and failed.reason.startswith("invalid command")
    data = await stack.accepted()
    assert data["messages"] == [] and data["read_receipts"] == []
    assert (
        stack.metric(
            sender,
            "whatsapp_messages_failed_total",
            phone_number_id=NUMBER,
            kind="text",
            error_code="validation",
        )
        >= 3
    )


async def test_duplicate_command_reaches_the_customer_once(
    stack: Stack, sender: web.Application
) -> None:
    command = text("una sola vez")
    for _ in range(3):
        await stack.publish(command)
    await stack.sent(command)
    await wait_for(
        lambda: (
            stack.metric(sender, "whatsapp_send_duplicates_total", phone_number_id=NUMBER)
            + stack.metric(
                sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason="busy"
            )
            >= 2
        ),
        message="the copies handled",
    )
    assert len({e.event_id for e in stack.of(MessageSent, command.event_id)}) == 1
    assert len(await stack.phone(PHONE)) == 1


@pytest.mark.parametrize("code", [131000, 130429, 4, 80007, 1, 2, 131016, 133004, 131057])
async def test_retryable_error_is_retried_then_sent(
    stack: Stack, sender: web.Application, code: int
) -> None:
    await stack.fault(recipient=PHONE, error_code=code, count=2)
    command = await stack.publish(text())
    await stack.sent(command)
    assert len(await stack.phone(PHONE)) == 1
    assert (
        stack.metric(
            sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason=str(code)
        )
        == 2
    )


async def test_http_500_and_timeouts_are_retried(stack: Stack, sender: web.Application) -> None:
    await stack.fault(http_500_rate=1.0)
    first = await stack.publish(text("tras un 500"))
    await wait_for(
        lambda: (
            stack.metric(
                sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason="131000"
            )
            >= 1
        ),
        message="a retry after HTTP 500",
    )
    await stack.clear_faults()
    await stack.sent(first)
    await stack.fault(timeout_rate=1.0, timeout_seconds=3.0)
    second = await stack.publish(text("tras un timeout", to="+5491100000009"))
    await wait_for(
        lambda: (
            stack.metric(
                sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason="unavailable"
            )
            >= 1
        ),
        timeout=10,
        message="a retry after a timeout",
    )
    await stack.clear_faults()
    await stack.sent(second, timeout=15)
    assert len(await stack.phone("+5491100000009")) == 1


async def test_timeout_after_meta_accepted_is_not_sent_twice(
    stack: Stack, sender: web.Application
) -> None:
    # Meta takes the message but its answer never arrives: the status webhook tells the log.
    await stack.fault(recipient=PHONE, timeout_rate=1.0, timeout_seconds=1.5, timeout_accepts=True)
    command = await stack.publish(text("llega una vez"))
    sent = await stack.sent(command, timeout=15)
    await stack.clear_faults()
    records = await stack.phone(PHONE)
    assert [r["wamid"] for r in records] == [sent.wamid]


async def test_retryable_error_until_validity_ends_fails(
    stack: Stack, sender: web.Application
) -> None:
    await stack.fault(recipient=PHONE, error_code=131000)
    command = await stack.publish(text(valid_until=datetime.now(UTC) + timedelta(seconds=1.0)))
    failed = await stack.failed(command)
    assert failed.error is not None and failed.error.code == 131000
    assert "validity" in failed.reason
    assert await stack.phone(PHONE) == []


async def test_pair_limit_backs_off_that_recipient_only(
    stack: Stack, sender: web.Application
) -> None:
    await stack.fault(recipient=PHONE, error_code=131056, count=1)
    slow = await stack.publish(text("a la chata"))
    other = await stack.publish(text("a otro", to="+5491100000001"))
    await stack.sent(other)
    await stack.sent(slow)
    assert len(await stack.phone(PHONE)) == 1
    assert (
        stack.metric(sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason="131056")
        == 1
    )


@pytest.mark.parametrize("sandbox_overrides", [{"enforce_window": True}])
async def test_outside_window_fallback_template_or_failed(
    stack: Stack, sender: web.Application
) -> None:
    with_fallback = await stack.publish(text("hola", fallback_template=REENGAGE))
    sent = await stack.sent(with_fallback)
    assert sent.used_fallback_template
    [record] = await stack.phone(PHONE)
    assert record["type"] == "template" and "Ana" in record["template"]["body"]

    without = await stack.publish(text("hola", to="+5491100000002"))
    failed = await stack.failed(without)
    assert failed.error is not None and failed.error.code == 131047
    assert "24-hour" in failed.reason

    await stack.inbound("+5491100000003")  # the customer writes: the window opens
    inside = await stack.publish(text("dentro", to="+5491100000003"))
    await stack.sent(inside)


async def test_token_failure_holds_messages_reports_once_and_resumes(
    stack: Stack, sender: web.Application
) -> None:
    await stack.fault(expire_token=True)
    phones = [f"+54911000001{i:02d}" for i in range(5)]
    commands = [await stack.publish(text(f"m{i}", to=p)) for i, p in enumerate(phones)]
    await wait_for(lambda: stack.of(ErrorReported), message="the error report")
    gauge = {"phone_number_id": NUMBER, "circuit": "token"}
    await wait_for(
        lambda: stack.metric(sender, "whatsapp_circuit_state", **gauge) >= 1, message="open"
    )
    # Several probes fail while it stays expired; nothing fails, one report.
    await wait_for(
        lambda: (
            stack.metric(
                sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason="190"
            )
            >= 3
        ),
        message="failed probes",
    )
    assert stack.of(MessageFailed) == [] and stack.of(MessageSent) == []
    await stack.fault(renew_token=True)
    for command in commands:
        await stack.sent(command, timeout=15)
    [report] = stack.of(ErrorReported)
    assert report.meta_code == 190 and report.phone_number_id == NUMBER
    for phone in phones:
        assert len(await stack.phone(phone)) == 1
    assert stack.metric(sender, "whatsapp_circuit_state", **gauge) == 0


async def test_token_renewed_by_restart_with_new_token(stack: Stack) -> None:
    from sender.app import create_app
    from tests.services import running

    await stack.fault(new_token="token-2")  # the old token is no longer valid
    old = create_app(stack.settings_for())
    async with running(old):
        command = await stack.publish(text("tras renovar"))
        await wait_for(lambda: stack.of(ErrorReported), message="the error report")
    assert stack.of(MessageFailed) == []
    async with running(create_app(stack.settings_for(META_WA_ACCESS_TOKEN="token-2"))):
        await stack.sent(command, timeout=15)
    assert len(await stack.phone(PHONE)) == 1


@pytest.mark.parametrize(
    ("code", "alert"), [(131026, False), (131050, False), (132001, True), (100, True), (368, True)]
)
async def test_permanent_error_fails_at_once(
    stack: Stack, sender: web.Application, code: int, alert: bool
) -> None:
    await stack.fault(recipient=PHONE, error_code=code, count=1)
    command = await stack.publish(text())
    failed = await stack.failed(command)
    assert failed.error is not None and failed.error.code == code
    assert failed.error.title and failed.error.details
    assert str(code) in failed.reason
    if alert:
        await wait_for(lambda: stack.of(ErrorReported), message="alert")
        assert stack.of(ErrorReported)[0].meta_code == code
    else:
        assert stack.of(ErrorReported) == []
    assert (
        stack.metric(
            sender,
            "whatsapp_messages_failed_total",
            phone_number_id=NUMBER,
            kind="text",
            error_code=str(code),
        )
        == 1
    )


async def test_failed_status_after_acceptance_is_final(
    stack: Stack, sender: web.Application
) -> None:
    await stack.fault(recipient=PHONE, async_failure_code=131026, count=1)
    command = await stack.publish(text())
    sent = await stack.sent(command)
    failed = await wait_for(lambda: stack.of(MessageFailed, command.event_id), message="failed")
    assert failed[0].wamid == sent.wamid and failed[0].error is not None
    assert failed[0].error.code == 131026
    await wait_for(
        lambda: (
            stack.metric(
                sender,
                "whatsapp_messages_failed_total",
                phone_number_id=NUMBER,
                kind="text",
                error_code="131026",
            )
            == 1
        ),
        message="failed counted",
    )
    assert stack.metric(sender, "whatsapp_messages_sent_total", **LABELS) == 0


@pytest.mark.parametrize("sandbox_overrides", [{"duplicate_webhooks": True}])
async def test_window_closed_reported_in_a_status_sends_the_fallback_template(
    stack: Stack, sender: web.Application
) -> None:
    # Meta accepts the text, then reports 131047 in a failed status webhook (sent twice here).
    await stack.fault(recipient=PHONE, async_failure_code=131047, count=1)
    command = await stack.publish(text("hola", fallback_template=REENGAGE))
    sends = await wait_for(
        lambda: (
            len(stack.of(MessageSent, command.event_id)) == 2
            and stack.of(MessageSent, command.event_id)
        ),
        message="the text's and the fallback template's results",
    )
    first, second = sorted(sends, key=lambda sent: sent.used_fallback_template)
    assert not first.used_fallback_template and second.used_fallback_template
    [record] = await wait_for(lambda: stack.phone(PHONE), message="the template on the phone")
    assert record["type"] == "template" and record["wamid"] == second.wamid
    for name in ("sent", "delivered", "read"):
        await wait_for(counted(stack, sender, name, 1), message=f"{name} counted")
    await wait_for(lambda: _webhooks_done(stack), message="every webhook delivered")
    row = await deps_of(sender).store.get(command.event_id)
    assert row is not None and row.status == "read" and row.wamid == second.wamid
    assert row.used_fallback
    assert stack.of(MessageFailed, command.event_id) == []
    assert len(await stack.phone(PHONE)) == 1
    assert (
        stack.metric(
            sender, "whatsapp_send_retries_total", phone_number_id=NUMBER, reason="131047_fallback"
        )
        == 1
    )


@pytest.mark.parametrize(
    "sandbox_overrides", [{"duplicate_webhooks": True, "reorder_webhooks": True}]
)
async def test_duplicated_and_reordered_statuses_count_once(
    stack: Stack, sender: web.Application
) -> None:
    commands = [await stack.publish(text(to=f"+5491100000{i:03d}")) for i in range(10)]
    for command in commands:
        await stack.sent(command)
    for name in ("sent", "delivered", "read"):
        await wait_for(counted(stack, sender, name, 10), message=f"{name} counted")
    pool_rows = await deps_of(sender).store.get(commands[0].event_id)
    assert pool_rows.status == "read"
    await wait_for(lambda: _webhooks_done(stack), message="every webhook delivered")
    for name in ("sent", "delivered", "read"):
        assert stack.metric(sender, f"whatsapp_messages_{name}_total", **LABELS) == 10


async def _webhooks_done(stack: Stack) -> bool:
    async with stack.http.get(f"{stack.sandbox_url}/_sandbox/webhooks") as r:
        return bool((await r.json())["pending"] == 0)


async def test_media_that_cannot_be_downloaded_fails(stack: Stack, sender: web.Application) -> None:
    command = await stack.publish(
        cmd({"kind": "image", "upload_url": f"{stack.relay_url}/files/missing.png"})
    )
    failed = await stack.failed(command)
    assert failed.error is not None and failed.error.code == 131053
