"""The WhatsApp webhook end to end: a running gateway, real RabbitMQ, events read back."""

from __future__ import annotations

import asyncio
import gc
import logging

import aio_pika
import aiohttp
import pytest

from gateway.app import create_app
from gateway.publisher import ROUTING_KEY_HEADER, UNROUTED_SERVICE
from shared.bus import Bus, BusError
from shared.events import (
    InboundMessage,
    MessageStatus,
    TemplateStatusUpdate,
    WebhookErrors,
    parse_event,
)
from shared.replay import replay_unrouted
from shared.signals import AccountUpdate, IdentityChanged, UnhandledField
from tests.gateway.conftest import (
    Collector,
    assert_nothing_else,
    delete_unrouted,
    gateway_settings,
    post,
)
from tests.gateway.payloads import (
    META_EXAMPLES,
    PHONE_NUMBER_ID,
    STATUSES,
    VERIFY_TOKEN,
    WABA_ID,
    catalog,
    contact,
    example,
    message,
    value,
    webhook,
)
from tests.helpers import wait_for
from tests.services import running

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "test123"},
            (200, "test123"),
        ),
        (
            {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "test123"},
            (403, None),
        ),
        (
            {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "c"},
            (403, None),
        ),
        ({"hub.mode": "subscribe", "hub.challenge": "c"}, (403, None)),
        ({}, (403, None)),
    ],
)
async def test_handshake(gateway: str, http: aiohttp.ClientSession, query, expected) -> None:
    async with http.get(gateway + "/webhook/whatsapp", params=query) as response:
        assert response.status == expected[0]
        text = await response.text()
        if expected[1] is not None:
            assert text == expected[1]
            assert response.content_type == "text/plain"
        else:
            assert "verification failed" in text


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("name", META_EXAMPLES)
async def test_meta_examples_each_become_one_event(
    gateway: str, http: aiohttp.ClientSession, collector: Collector, name: str
) -> None:
    payload = example(name)
    meta_message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    assert await post(http, gateway, payload) == (200, "ok")
    [event] = await collector.wait(1)
    if name == "system_message":  # user_changed_number: the customer's identity, not a message
        assert isinstance(event, IdentityChanged) and event.change == "user_changed_number"
        assert event.wamid == event.correlation_id == meta_message["id"]
        assert (event.previous.phone, event.current.phone) == ("+16505551234", "+12195555358")
        assert event.body == meta_message["system"]["body"]
        await assert_nothing_else(http, gateway, collector, before=1)
        return
    assert isinstance(event, InboundMessage)
    assert event.wamid == meta_message["id"]
    assert event.correlation_id == meta_message["id"]
    assert event.phone_number_id == PHONE_NUMBER_ID
    assert event.sender.phone == "+16505551234"
    assert event.sender.wa_id == "16505551234"
    assert event.raw == meta_message
    assert event.timestamp.timestamp() == int(meta_message["timestamp"])
    assert event.sender.name == "Sheena Nelson"
    expected_text = {
        "text_message": "Does it come in another color?",
        "image_message": "Taj Mahal",
        "button_message": "Unsubscribe",
        "interactive_button_reply_message": "Cancel",
        "interactive_list_reply_message": "Priority Mail Express",
        "text_message_with_context_product_inquiry": "Is this still available?",
        "text_message_from_click_to_whatsapp_ad": "Hello! Can I get more info on this?",
    }
    assert event.text == expected_text.get(name)
    if "context" in meta_message:
        assert event.context is not None
        assert event.context.message_id == meta_message["context"]["id"]
    await assert_nothing_else(http, gateway, collector, before=1)


async def test_every_message_type_single(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    items = catalog()
    for name, meta_message, _check in items:
        payload = webhook(value(contacts=[contact()], messages=[meta_message]))
        assert await post(http, gateway, payload) == (200, "ok"), name
    events = await collector.wait(len(items))
    assert len(events) == len(items)
    for (name, meta_message, check), event in zip(items, events, strict=True):
        assert isinstance(event, InboundMessage), name
        assert event.wamid == meta_message["id"], name
        assert event.sender.phone == "+5491135722871"
        assert event.sender.name == "Usuario"
        check(event)


async def test_mixed_batch_with_duplicates_gives_one_event_per_update(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    items = catalog()
    messages = [m for _, m, _ in items]
    error = {
        "code": 131000,
        "title": "Something went wrong",
        "message": "x",
        "error_data": {"details": "try again"},
    }
    values = [
        value(contacts=[contact()], messages=messages[:10]),
        value(contacts=[contact()], messages=messages[10:]),
        value(statuses=STATUSES),
        value(errors=[error]),
    ]
    payload = webhook(*values, entries=2)
    template = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA_ID,
                "time": 1750091200,
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "APPROVED",
                            "message_template_id": 123,
                            "message_template_name": "promo",
                            "message_template_language": "es_AR",
                            "reason": "NONE",
                        },
                    },
                    {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
                ],
            }
        ],
    }
    payload["entry"].extend(template["entry"])
    expected = len(messages) + len(STATUSES) + 1 + 1 + 1
    assert await post(http, gateway, payload) == (200, "ok")
    events = await collector.wait(expected)
    assert len(events) == expected
    inbound = collector.of_type(InboundMessage)
    assert sorted(e.wamid for e in inbound) == sorted(m["id"] for m in messages)
    statuses = collector.of_type(MessageStatus)
    assert sorted((s.wamid, s.status) for s in statuses) == sorted(
        (s["id"], s["status"]) for s in STATUSES
    )
    assert len({s.event_id for s in statuses}) == len(STATUSES)  # sent/delivered/read differ
    [errors] = collector.of_type(WebhookErrors)
    assert errors.errors[0].code == 131000 and errors.errors[0].details == "try again"
    [template_event] = collector.of_type(TemplateStatusUpdate)
    assert (template_event.event, template_event.template_id, template_event.template_name) == (
        "APPROVED",
        "123",
        "promo",
    )
    assert template_event.waba_id == WABA_ID
    [account] = collector.of_type(AccountUpdate)
    assert (account.event, account.waba_id) == ("VERIFIED_ACCOUNT", WABA_ID)

    # Meta delivers the same webhook again: the same events, with the same ids.
    first_ids = sorted(e.event_id for e in events)
    assert await post(http, gateway, payload) == (200, "ok")
    again = await collector.wait(2 * expected)
    assert sorted(e.event_id for e in again[expected:]) == first_ids
    assert len(set(first_ids)) == expected


async def test_status_fields(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    assert await post(http, gateway, webhook(value(statuses=STATUSES))) == (200, "ok")
    await collector.wait(len(STATUSES))
    by = {(e.wamid, e.status): e for e in collector.of_type(MessageStatus)}
    sent = by[("wamid.out1", "sent")]
    assert isinstance(sent, MessageStatus)
    assert sent.biz_opaque_callback_data == "cmd-123"
    assert sent.pricing == {"billable": True, "pricing_model": "PMP", "category": "utility"}
    assert sent.conversation is not None and sent.conversation["id"] == "conv-1"
    assert sent.recipient.phone == "+5491135722871"
    assert sent.correlation_id == "wamid.out1"
    failed = by[("wamid.out2", "failed")]
    assert failed.errors[0].code == 131047
    assert failed.errors[0].details == "More than 24 hours have passed"
    assert by[("wamid.out3", "played")].status == "played"


async def test_withheld_phone_carries_business_scoped_ids(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    meta_message = message("wamid.bsuid", "text", {"body": "hola"}, from_user_id="AR.123")
    del meta_message["from"]
    contacts = [contact(None, "Ana", user_id="AR.123", parent_user_id="AR.ENT.9")]
    statuses = [
        {
            "id": "wamid.o",
            "status": "delivered",
            "timestamp": "1750091100",
            "recipient_user_id": "AR.123",
            "recipient_parent_user_id": "AR.ENT.9",
        }
    ]
    payload = webhook(
        value(contacts=contacts, messages=[meta_message]),
        value(contacts=contacts, statuses=statuses),
    )
    assert await post(http, gateway, payload) == (200, "ok")
    inbound, delivered = await collector.wait(2)
    assert isinstance(inbound, InboundMessage) and isinstance(delivered, MessageStatus)
    assert inbound.sender.phone is None and inbound.sender.wa_id is None
    assert (inbound.sender.user_id, inbound.sender.parent_user_id) == ("AR.123", "AR.ENT.9")
    assert inbound.sender.name == "Ana"
    assert inbound.sender.key == "AR.123"
    assert delivered.recipient.phone is None
    assert (delivered.recipient.user_id, delivered.recipient.parent_user_id) == (
        "AR.123",
        "AR.ENT.9",
    )


async def test_phone_and_user_id_together(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    contacts = [contact("5491135722871", "Usuario", user_id="AR.55")]
    meta_message = message("wamid.both", "text", {"body": "Hola"})
    assert await post(
        http, gateway, webhook(value(contacts=contacts, messages=[meta_message]))
    ) == (200, "ok")
    [event] = await collector.wait(1)
    assert isinstance(event, InboundMessage)
    assert (event.sender.phone, event.sender.user_id) == ("+5491135722871", "AR.55")


# --------------------------------------------------------------------------- not for us


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "page", "entry": [{"id": "1", "changes": []}]},
        {"object": "instagram"},
        {"object": "whatsapp_business_account", "entry": []},
        [],
        "just a string",
    ],
)
async def test_signed_content_we_do_not_handle_is_200_and_nothing(
    gateway: str, http: aiohttp.ClientSession, collector: Collector, payload
) -> None:
    assert await post(http, gateway, payload) == (200, "ok")
    await assert_nothing_else(http, gateway, collector)


async def test_fields_once_ignored_are_events_now(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    """A field a model covers is its event; one no model covers is published as it came."""
    group = example("group_create_message")
    account = webhook({"event": "VERIFIED_ACCOUNT"}, field="account_update")
    assert await post(http, gateway, account) == (200, "ok")
    assert await post(http, gateway, group) == (200, "ok")
    update, unhandled = await collector.wait(2)
    assert isinstance(update, AccountUpdate) and update.event == "VERIFIED_ACCOUNT"
    assert isinstance(unhandled, UnhandledField)
    change = group["entry"][0]["changes"][0]
    assert (unhandled.field, unhandled.value) == ("group_lifecycle_update", change["value"])
    assert unhandled.waba_id == group["entry"][0]["id"]
    await assert_nothing_else(http, gateway, collector, before=2)


# --------------------------------------------------------------------------- logs and ops


async def test_runbook_log_lines_and_one_structured_line_per_event(
    gateway: str, http: aiohttp.ClientSession, collector: Collector, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.gateway")
    payload = webhook(
        value(contacts=[contact()], messages=[message("wamid.log", "text", {"body": "Hola"})]),
        value(statuses=STATUSES[:2]),
    )
    assert await post(http, gateway, payload) == (200, "ok")
    await collector.wait(3)
    lines = [r.getMessage() for r in caplog.records]
    assert "=== WEBHOOK WHATSAPP RECIBIDO ===" in lines
    assert "✅ Firma de webhook válida" in lines
    assert "Mensaje recibido de +5491135722871 (Usuario): Hola" in lines
    # One structured line per event once confirmed (for a message, the runbook's line).
    published = [
        r
        for r in caplog.records
        if hasattr(r, "mensajero_fields") and "event_id" in r.mensajero_fields
    ]
    assert len(published) == 3
    assert {r.mensajero_fields["type"] for r in published} == {
        InboundMessage.TYPE,
        MessageStatus.TYPE,
    }


async def test_ops_endpoints_and_metrics(
    gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    payload = webhook(
        value(contacts=[contact()], messages=[message("wamid.m", "text", {"body": "Hola"})]),
        value(statuses=STATUSES),
    )
    assert await post(http, gateway, payload) == (200, "ok")
    assert (await post(http, gateway, payload, signature="sha256=00"))[0] == 401
    async with http.get(gateway + "/healthz") as response:
        assert response.status == 200
    async with http.get(gateway + "/readyz") as response:
        assert response.status == 200
        assert (await response.json())["checks"] == {"rabbitmq": True}
    async with http.get(gateway + "/metrics") as response:
        text = await response.text()
    assert 'gateway_webhook_requests_total{endpoint="whatsapp",outcome="accepted"} 1.0' in text
    assert 'gateway_webhook_requests_total{endpoint="whatsapp",outcome="unauthorized"} 1.0' in text
    assert 'gateway_events_published_total{type="whatsapp.status.received"} 5.0' in text
    assert 'gateway_events_published_total{type="whatsapp.message.received"} 1.0' in text
    assert "gateway_webhook_request_seconds_bucket" in text
    assert "gateway_publish_confirm_seconds_count 1.0" in text


# --------------------------------------------------------------------------- unroutable


async def test_unroutable_events_are_parked_not_lost(
    rabbitmq_url: str, bus_prefix: str, bus: Bus, http: aiohttp.ClientSession
) -> None:
    # No consumer has bound a queue yet (no collector here): every event comes back returned.
    settings = gateway_settings(rabbitmq_url, bus_prefix)
    payload = webhook(
        value(contacts=[contact()], messages=[message("wamid.early", "text", {"body": "Hola"})]),
        value(statuses=STATUSES[:2]),
    )
    try:
        async with running(create_app(settings)) as url:
            assert await post(http, url, payload) == (200, "ok")
            async with http.get(url + "/metrics") as response:
                text = await response.text()
            assert 'gateway_events_unrouted_total{type="whatsapp.status.received"} 2.0' in text
        channel = await bus.connection.channel()
        queue = await channel.declare_queue(bus.names.queue(UNROUTED_SERVICE), passive=True)
        parked = []

        async def take() -> bool:
            message_ = await queue.get(fail=False, no_ack=True)
            if message_ is not None:
                parked.append(message_)
            return len(parked) == 3

        await wait_for(take, message="3 parked events")
        keys = sorted(str(m.headers[ROUTING_KEY_HEADER]) for m in parked)
        assert keys == [InboundMessage.TYPE, MessageStatus.TYPE, MessageStatus.TYPE]
        wamids = {parse_event(m.type or "", m.body).correlation_id for m in parked}
        assert wamids == {"wamid.early", "wamid.out1"}
        # Put them back, as an operator would once a consumer exists: only then are they taken.
        for parked_message in parked:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    parked_message.body,
                    type=parked_message.type,
                    message_id=parked_message.message_id,
                    headers=parked_message.headers,
                ),
                routing_key=bus.names.queue(UNROUTED_SERVICE),
            )
        with pytest.raises(BusError, match="unroutable"):  # still nobody bound: they stay
            await replay_unrouted(bus)
        depth = await channel.declare_queue(bus.names.queue(UNROUTED_SERVICE), passive=True)
        assert depth.declaration_result.message_count == 3
        collector = Collector()
        sink = await channel.declare_queue(exclusive=True)
        await sink.bind(bus.names.exchange, routing_key="#")
        await sink.consume(collector.on_message)
        assert await replay_unrouted(bus) == 3
        events = await collector.wait(3)
        assert {e.correlation_id for e in events} == {"wamid.early", "wamid.out1"}
        await channel.close()
    finally:
        await delete_unrouted(bus)


@pytest.mark.parametrize(
    "query",
    [
        "hub.mode=subscribe&hub.verify_token=%ED%A0%80&hub.challenge=x",
        "hub.mode=subscribe&hub.verify_token=%FF%FE&hub.challenge=x",
        "hub.mode=%00&hub.verify_token=&hub.challenge=",
        "hub.mode=subscribe&hub.mode=subscribe&hub.verify_token=a&hub.verify_token=b",
        "%%%",
    ],
)
async def test_handshake_with_garbage_query_is_403(
    gateway: str, http: aiohttp.ClientSession, query: str
) -> None:
    async with http.get(gateway + "/webhook/whatsapp?" + query) as response:
        assert response.status == 403


async def test_one_webhook_in_flight_many_times_at_once_is_parked_each_time(
    rabbitmq_url: str,
    bus_prefix: str,
    bus: Bus,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Meta repeats a webhook while the first is still in flight; nothing is bound yet, so every
    # copy is parked: each answer is 200, and each park is confirmed, none confused with another.
    settings = gateway_settings(rabbitmq_url, bus_prefix)
    payload = webhook(
        value(contacts=[contact()], messages=[message("wamid.again", "text", {"body": "Hola"})])
    )
    copies = 30
    try:
        async with running(create_app(settings)) as url:
            answers = await asyncio.gather(*(post(http, url, payload) for _ in range(copies)))
            assert answers == [(200, "ok")] * copies
        channel = await bus.connection.channel()
        queue = await channel.declare_queue(bus.names.queue(UNROUTED_SERVICE), passive=True)
        assert queue.declaration_result.message_count == copies
        await channel.close()
        gc.collect()  # a future whose exception nobody took is reported when it is collected
        assert [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()] == []
    finally:
        await delete_unrouted(bus)
