"""Bodies that once made the gateway answer 503 (issue 11): each now gets a 4xx, or a 200 with
what could not become an event counted as skipped. Through the real app and RabbitMQ."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import aiohttp
import pytest

from shared.events import (
    EmailBounced,
    EmailDelivered,
    InboundMessage,
    MessageStatus,
    TemplateStatusUpdate,
    WebhookErrors,
)
from tests.gateway.conftest import Collector, assert_nothing_else, marker, post, post_sns
from tests.gateway.payloads import contact, message, sign, status, value, webhook
from tests.snsfake import FakeSns

pytestmark = pytest.mark.integration


def nested(depth: int) -> Any:
    node: Any = "bottom"
    for _ in range(depth):
        node = {"n": [node]}
    return node


async def skipped_count(http: aiohttp.ClientSession, url: str, field: str | None = None) -> float:
    """Malformed updates skipped, over every webhook field (or of one ``field``)."""
    async with http.get(url + "/metrics") as response:
        text = await response.text()
    wanted = ['reason="malformed"', *([f'field="{field}"'] if field else [])]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_updates_skipped_total{") and all(w in line for w in wanted)
    )


# --------------------------------------------------------------------------- hole 2: SNS types


# A JSON array nested 1,000 deep: as deep as the JSON reader goes, deeper than repr() can.
DEEP_ARRAY = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize(
    "body",
    [
        b'{"Type": []}',
        b'{"Type": {}}',
        b'{"Type": ["Notification"]}',
        b'{"Type": {"Notification": 1}}',
        b'["Notification"]',
        b'{"Type": ' + DEEP_ARRAY + b"}",
        b'{"Type": [["Notification"]], "MessageId": [], "Signature": {}}',
    ],
)
async def test_sns_envelope_with_a_type_that_is_not_a_string_is_400(
    ses_gateway: str,
    http: aiohttp.ClientSession,
    collector: Collector,
    fake_sns: FakeSns,
    body: bytes,
) -> None:
    status_code, text = await post_sns(http, ses_gateway, body)
    assert status_code == 400, text
    assert text.startswith(("unknown SNS message type", "body is not a JSON object"))
    await marker(http, ses_gateway, fake_sns, collector, before=0)


async def test_signed_object_that_is_not_a_string_is_ignored(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    for body in (b'{"object": ' + DEEP_ARRAY + b"}", b'{"object": {"a": []}, "entry": []}'):
        assert await post(http, gateway, body=body) == (200, "ok")
    await assert_nothing_else(http, gateway, collector)


# --------------------------------------------------------------------------- hole 3: parser


async def test_deep_value_level_errors_still_report_the_error(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    errors = [{"code": 131000, "title": "Something went wrong", "deep": nested(300)}]
    assert await post(http, gateway, webhook(value(errors=errors))) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, WebhookErrors)
    assert [(e.code, e.title) for e in event.errors] == [(131000, "Something went wrong")]


async def test_deep_template_status_is_published_without_its_raw_object(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    update = {"event": "APPROVED", "message_template_name": "promo", "other_info": nested(300)}
    payload = webhook(update, field="message_template_status_update")
    assert await post(http, gateway, payload) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, TemplateStatusUpdate)
    assert (event.event, event.template_name) == ("APPROVED", "promo")
    assert event.raw["truncated"].startswith("not serialisable")


async def test_deep_flow_answer_reads_as_absent(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    tap = {"type": "nfm_reply", "nfm_reply": {"name": "flow", "response_json": nested(300)}}
    payload = webhook(
        value(contacts=[contact()], messages=[message("wamid.flow", "interactive", tap)])
    )
    assert await post(http, gateway, payload) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, InboundMessage) and event.reply is not None
    assert (event.reply.kind, event.reply.id, event.reply.response_json) == (
        "nfm_reply",
        "flow",
        None,
    )


async def test_a_type_nested_too_deep_is_not_kept_in_the_slimmed_event(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    """Found by the fuzzer: the event went out without Meta's objects but with the raw "type",
    itself nested 250 deep, which no consumer could parse."""
    deep_type = message("wamid.deep_type", "text", {"body": "x"}, type=[[[["text"]]]])
    body = json.dumps(webhook(value(contacts=[contact()], messages=[deep_type])))
    body = body.replace('[[[["text"]]]]', "[" * 250 + '"text"' + "]" * 250)
    assert await post(http, gateway, body=body.encode()) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, InboundMessage)
    assert (event.message_type, event.raw["type"]) == ("unsupported", None)


@pytest.mark.parametrize("code", ["²", "٣", "1" * 5000, "99999999999", 2**64 - 1, -(2**40)])
async def test_error_codes_no_column_can_hold_read_as_zero(
    gateway: str, http: aiohttp.ClientSession, collector: Collector, code: Any
) -> None:
    failed = status("wamid.failed", "failed", errors=[{"code": code, "title": "t"}])
    payload = webhook(value(errors=[{"code": code, "title": "t"}], statuses=[failed]))
    assert await post(http, gateway, payload) == (200, "ok")
    events = await collector.wait(2)
    codes = [e.errors[0].code for e in events if isinstance(e, WebhookErrors | MessageStatus)]
    assert codes == [0, 0]


@pytest.mark.parametrize("time", ["²", "1" * 5000, 10**15, -62135596800, 1e300])
async def test_unreadable_times_read_as_the_arrival_time(
    gateway: str, http: aiohttp.ClientSession, collector: Collector, time: Any
) -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "time": time,
                "changes": [
                    {"field": "message_template_status_update", "value": {"event": "APPROVED"}}
                ],
            },
            {
                "id": "2",
                "changes": [
                    {
                        "field": "messages",
                        "value": value(
                            contacts=[contact()],
                            messages=[
                                {**message("wamid.t", "text", {"body": "a"}), "timestamp": time}
                            ],
                        ),
                    }
                ],
            },
        ],
    }
    assert await post(http, gateway, payload) == (200, "ok")
    template, inbound = await collector.wait(2)
    assert isinstance(template, TemplateStatusUpdate) and isinstance(inbound, InboundMessage)
    assert abs((template.occurred_at - inbound.occurred_at).total_seconds()) < 60
    assert 2020 < inbound.timestamp.year < 2100


async def test_ids_too_long_for_a_header_are_skipped_and_counted(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    long_id = "wamid." + "A" * 300
    wide_id = "wamid." + "ñ" * 120  # 246 bytes: under 255 characters, over the bound in bytes
    payload = webhook(
        value(
            contacts=[contact()],
            messages=[
                message(long_id, "text", {"body": "largo"}),
                message(wide_id, "text", {"body": "ancho"}),
                message("wamid.ok", "text", {"body": "bien"}),
            ],
            statuses=[status(long_id, "sent")],
        )
    )
    before = await skipped_count(http, gateway)
    assert await post(http, gateway, payload) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, InboundMessage) and event.wamid == "wamid.ok"
    assert await skipped_count(http, gateway) == before + 3
    assert await skipped_count(http, gateway, "messages") == before + 3
    await assert_nothing_else(http, gateway, collector, before=1)


async def test_identities_and_numbers_too_long_for_an_index_read_as_absent(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    huge = "9" * 3000
    payload = webhook(
        value(
            contacts=[{"wa_id": huge, "user_id": "AR." + "1" * 3000, "profile": {"name": "X"}}],
            messages=[
                message("wamid.who", "text", {"body": "hola"}, sender=huge, from_user_id="U" * 500)
            ],
            phone_number_id="1" * 3000,
        )
    )
    assert await post(http, gateway, payload) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, InboundMessage)
    sender = event.sender
    assert (sender.phone, sender.wa_id, sender.user_id) == (None, None, None)
    assert event.phone_number_id == ""


async def test_ses_message_id_too_long_for_a_header_is_dropped(
    ses_gateway: str,
    http: aiohttp.ClientSession,
    collector: Collector,
    fake_sns: FakeSns,
) -> None:
    bounce = {
        "eventType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "a@b.c"}]},
        "mail": {"messageId": "0100" + "f" * 400},
    }
    delivery = {"eventType": "Delivery", "delivery": {"recipients": ["a@b.c"]}, "mail": {}}
    delivery["mail"] = {"messageId": "x" * 256}
    for event_body in (bounce, delivery):
        data = fake_sns.message(message=event_body)
        assert await post_sns(http, ses_gateway, data) == (200, "ok")
    bounced, delivered = await collector.wait(2)
    assert isinstance(bounced, EmailBounced) and isinstance(delivered, EmailDelivered)
    assert bounced.addresses == ["a@b.c"]
    assert (bounced.ses_message_id, bounced.correlation_id) == (None, None)
    assert delivered.ses_message_id is None


@pytest.mark.parametrize(
    "address",
    ["nadie\u0000@example.com", "a" * 250 + "@example.com", "x\r\n@example.com", "", 7, None],
)
async def test_ses_addresses_that_are_not_addresses_are_dropped(
    ses_gateway: str,
    http: aiohttp.ClientSession,
    collector: Collector,
    fake_sns: FakeSns,
    address: Any,
) -> None:
    good = "bien@example.com"
    bounce = {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "Gen\u0000eral",
            "bouncedRecipients": [{"emailAddress": address}, {"emailAddress": good}],
        },
        "mail": {"messageId": "ses-1"},
    }
    assert await post_sns(http, ses_gateway, fake_sns.message(message=bounce)) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, EmailBounced)
    assert event.addresses == [good]
    assert event.bounce_subtype == "Gen\ufffderal"


# --------------------------------------------------------------------------- NUL


async def test_nul_in_customer_text_and_name_becomes_the_replacement_character(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    payload = webhook(
        value(
            contacts=[contact(name="Ana\u0000María")],
            messages=[
                message("wamid.nul\u0000", "text", {"body": "ho\u0000la \\u0000 \\\u0000"}),
            ],
        )
    )
    body = json.dumps(payload).encode()
    assert b"\\u0000" in body
    assert await post(http, gateway, body=body) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, InboundMessage)
    assert event.sender.name == "Ana\ufffdMaría"
    # An escaped backslash before "u0000" is text, not a NUL: it is kept as it was.
    assert event.text == "ho\ufffdla \\u0000 \\\ufffd"
    assert event.wamid == "wamid.nul\ufffd"
    assert event.raw["text"]["body"] == event.text


# --------------------------------------------------------------------------- hole 4: encodings


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(b"{}")[:10] + b"\xff\xff corrupt deflate data"),
        ("deflate", b"\x00\x01\x02 not deflate"),
        ("br", b"not brotli"),
    ],
)
async def test_undecodable_content_encoding_is_400(
    gateway: str,
    http: aiohttp.ClientSession,
    collector: Collector,
    encoding: str,
    body: bytes,
) -> None:
    headers = {"Content-Encoding": encoding}
    status_code, text = await post(http, gateway, body=body, headers=headers)
    assert status_code == 400, text
    await assert_nothing_else(http, gateway, collector)


async def test_compressed_body_signed_as_decoded_is_read(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    raw = json.dumps(
        webhook(value(contacts=[contact()], messages=[message("wamid.z", "text", {"body": "z"})]))
    ).encode()
    for encoding, packed in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        headers = {"Content-Encoding": encoding}
        assert await post(http, gateway, body=packed, signature=sign(raw), headers=headers) == (
            200,
            "ok",
        )
    assert len(await collector.wait(2)) == 2
