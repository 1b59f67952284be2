"""Every webhook field through the real path: the sandbox (a local Meta) emits its signed
webhook, the running gateway reads it, and its typed event is read back from RabbitMQ.

Shapes are the sandbox's (sandbox/README.md, "The shapes, and where they come from"), which
follow Meta's pages.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.publisher import FEED_EVENTS, UNROUTED_SERVICE
from shared.bus import Bus
from shared.catalog import FLOWS
from shared.events import Event, InboundMessage, MessageStatus
from shared.feed import feed_queue_name
from shared.signals import (
    AccountUpdate,
    CallEvent,
    CallStatus,
    ContactsSynced,
    HistoryChunk,
    IdentityChanged,
    MessageEcho,
    PhoneNumberName,
    PhoneNumberQuality,
    PreferenceChanged,
    TemplateCategoryUpdate,
    TemplateComponentsUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
    UnhandledField,
)
from tests.gateway.conftest import Collector, assert_nothing_else, post
from tests.helpers import wait_for
from tests.sandbox.support import Api, text_message, to_bsuid

pytestmark = pytest.mark.integration

PHONE = "+5491135722871"
BSUID = "AR.13491208655302741918"
WABA_ID = "200000000000001"  # the sandbox's (tests/sandbox/support.py)
PHONE_NUMBER_ID = "100000000000001"
HELLO: dict[str, Any] = {"name": "hello_world", "language": "en_US"}


async def emitted(
    sandbox: Api,
    gateway: str,
    http: aiohttp.ClientSession,
    collector: Collector,
    count: int = 1,
    **request: Any,
) -> list[Any]:
    """The events one emitted webhook became (exactly ``count``, nothing else)."""
    before = len(collector.events)
    await sandbox.emit(**request)
    events = (await collector.wait(before + count))[before:]
    await assert_nothing_else(http, gateway, collector, before=before + count)
    return events


async def phoneless_customer(sandbox: Api, collector: Collector) -> InboundMessage:
    """A customer who hides the phone behind a username writes "Hola"."""
    before = len(collector.events)
    status, answer = await sandbox.inbound(user_id=BSUID, username="ana", name="Ana", text="Hola")
    assert status == 200 and answer["gateway_status"] == 200, answer
    [message] = (await collector.wait(before + 1))[before:]
    assert isinstance(message, InboundMessage)
    return message


# --------------------------------------------------------------------------- customers


async def test_a_phoneless_customer_is_known_by_bsuid_and_username(
    sandbox: Api, collector: Collector
) -> None:
    message = await phoneless_customer(sandbox, collector)
    sender = message.sender
    assert (sender.phone, sender.wa_id) == (None, None)
    assert (sender.user_id, sender.username, sender.name) == (BSUID, "ana", "Ana")
    assert message.text == "Hola"


async def test_statuses_name_the_recipient_by_bsuid_with_the_username_once_delivered(
    sandbox: Api, collector: Collector
) -> None:
    await phoneless_customer(sandbox, collector)
    status, answer = await sandbox.send(to_bsuid(text_message(), BSUID))
    assert status == 200, answer
    wamid = answer["messages"][0]["id"]
    await collector.wait(4)
    statuses = {s.status: s for s in collector.of_type(MessageStatus) if s.wamid == wamid}
    assert set(statuses) == {"sent", "delivered", "read"}
    for name, found in statuses.items():
        assert (found.recipient.phone, found.recipient.user_id) == (None, BSUID), name
    # Meta gives the username on delivered and read only.
    assert statuses["sent"].recipient.username is None
    assert statuses["delivered"].recipient.username == "ana"
    assert statuses["read"].recipient.username == "ana"


async def test_marketing_preferences(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [stop] = await emitted(
        sandbox, gateway, http, collector, field="user_preferences", customer=PHONE, value="stop"
    )
    assert isinstance(stop, PreferenceChanged)
    assert stop.customer.phone == PHONE and stop.customer.user_id
    assert (stop.category, stop.value, stop.stops_marketing) == ("marketing_messages", "stop", True)
    assert stop.detail == "User requested to stop marketing messages"
    [resume] = await emitted(
        sandbox, gateway, http, collector, field="user_preferences", customer=PHONE, value="resume"
    )
    assert isinstance(resume, PreferenceChanged) and resume.allows_marketing
    assert resume.event_id != stop.event_id


async def test_call_permission_reply_is_a_message_with_the_answer(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [reply] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="messages",
        type="call_permission_reply",
        customer=PHONE,
        context_id="wamid.request",
    )
    assert isinstance(reply, InboundMessage)
    assert reply.message_type == "interactive" and reply.text is None
    permission = reply.call_permission
    assert permission is not None
    assert (permission.response, permission.response_source) == ("accept", "user_action")
    assert permission.expires_at is not None
    assert 6 < (permission.expires_at - reply.timestamp).days <= 7


# --------------------------------------------------------------------------- identities


async def test_a_changed_number_is_an_identity_change_not_a_message(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [first] = await emitted(
        sandbox, gateway, http, collector, field="user_preferences", customer=PHONE, value="stop"
    )
    old_user_id = first.customer.user_id
    [change] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="messages",
        type="user_changed_number",
        customer=PHONE,
        new_phone="+5491144445555",
    )
    assert isinstance(change, IdentityChanged)
    assert change.change == "user_changed_number"
    assert (change.previous.phone, change.previous.user_id) == (PHONE, old_user_id)
    assert change.current.phone == "+5491144445555"
    assert change.current.user_id and change.current.user_id != old_user_id  # Meta makes a new one
    assert change.body and "changed from" in change.body
    assert change.wamid == change.correlation_id and change.phone_number_id == PHONE_NUMBER_ID


async def test_a_changed_bsuid_keeps_the_phone(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    message = await phoneless_customer(sandbox, collector)
    [change] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        count=1,
        field="messages",
        type="user_changed_user_id",
        customer=BSUID,
        new_user_id="AR.99999999999999999999",
    )
    assert isinstance(change, IdentityChanged) and change.change == "user_changed_user_id"
    assert change.previous.user_id == message.sender.user_id == BSUID
    assert change.current.user_id == "AR.99999999999999999999"
    assert change.current.phone is None


async def test_a_new_identity_on_the_same_phone(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [change] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="messages",
        type="customer_identity_changed",
        customer=PHONE,
    )
    assert isinstance(change, IdentityChanged) and change.change == "customer_identity_changed"
    assert change.previous == change.current
    assert change.current.phone == PHONE and change.current.name == "Usuario"


async def test_user_id_update(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [first] = await emitted(
        sandbox, gateway, http, collector, field="user_preferences", customer=PHONE, value="stop"
    )
    [change] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="user_id_update",
        customer=PHONE,
        new_user_id="AR.11112222333344445555",
    )
    assert isinstance(change, IdentityChanged) and change.change == "user_id_update"
    assert change.previous.user_id == first.customer.user_id
    assert change.current.user_id == "AR.11112222333344445555"
    assert change.previous.phone == change.current.phone == PHONE
    assert change.wamid is None and change.body


# --------------------------------------------------------------------------- coexistence


async def test_an_echo_from_the_business_app(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [echo] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="smb_message_echoes",
        customer=PHONE,
        text="Te atiendo yo",
    )
    assert isinstance(echo, MessageEcho)
    assert (echo.customer.phone, echo.text, echo.message_type) == (PHONE, "Te atiendo yo", "text")
    assert echo.wamid == echo.correlation_id and echo.waba_id == WABA_ID
    inbox = await sandbox.inbox(PHONE)
    assert inbox[-1]["wamid"] == echo.wamid and inbox[-1]["source"] == "business_app"


async def test_an_echo_to_a_phoneless_customer_names_the_bsuid(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    await phoneless_customer(sandbox, collector)
    [echo] = await emitted(
        sandbox, gateway, http, collector, field="smb_message_echoes", customer=BSUID, revoke="w.1"
    )
    assert isinstance(echo, MessageEcho)
    assert (echo.customer.phone, echo.customer.user_id) == (None, BSUID)
    assert (echo.message_type, echo.original_message_id) == ("revoke", "w.1")


async def test_history(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [chunk] = await emitted(sandbox, gateway, http, collector, field="history", customer=PHONE)
    assert isinstance(chunk, HistoryChunk)
    assert (chunk.phase, chunk.chunk_order, chunk.progress) == (0, 1, 100)
    [thread] = chunk.threads
    assert thread.customer.phone == PHONE and thread.customer.user_id
    assert [(m.from_business, m.text, m.status) for m in thread.messages] == [
        (False, "Hola, ¿tienen turnos?", "READ"),
        (True, "Sí, mañana a las 10.", "READ"),
    ]
    [declined] = await emitted(
        sandbox, gateway, http, collector, field="history", customer=PHONE, declined=True
    )
    assert isinstance(declined, HistoryChunk) and declined.threads == []
    assert declined.errors[0].code == 2593109


async def test_contacts_synced(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [added] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="smb_app_state_sync",
        customer=PHONE,
        full_name="Lucía Gómez",
    )
    assert isinstance(added, ContactsSynced)
    [contact] = added.contacts
    assert (contact.action, contact.full_name, contact.first_name) == (
        "add",
        "Lucía Gómez",
        "Lucía",
    )
    assert contact.contact.phone == PHONE and contact.timestamp is not None
    [removed] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="smb_app_state_sync",
        customer=PHONE,
        action="remove",
    )
    assert isinstance(removed, ContactsSynced) and removed.contacts[0].action == "remove"


# --------------------------------------------------------------------------- account


ACCOUNT_EVENTS = [
    ("ACCOUNT_RESTRICTION", "restriction_info", "restricted"),
    ("ACCOUNT_VIOLATION", "violation_info", "violation"),
    ("DISABLED_UPDATE", "ban_info", "disabled"),
    ("ACCOUNT_OFFBOARDED", None, "offboarded"),
    ("ACCOUNT_RECONNECTED", None, "reinstated"),
    ("ACCOUNT_DELETED", None, "offboarded"),
    ("PARTNER_ADDED", "waba_info", None),
    ("PARTNER_REMOVED", "waba_info", None),
    ("PARTNER_APP_INSTALLED", "waba_info", None),
    ("AD_ACCOUNT_LINKED", "waba_info", None),
    ("MM_LITE_TERMS_SIGNED", "waba_info", None),
    ("VOLUME_BASED_PRICING_TIER_UPDATE", "volume_tier_info", None),
    ("PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE", "partner_client_certification_info", None),
    ("AUTH_INTL_PRICE_ELIGIBILITY_UPDATE", "auth_international_rate_eligibility", None),
    ("BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE", "country", None),
]


@pytest.mark.parametrize(("kind", "detail", "state"), ACCOUNT_EVENTS)
async def test_account_update_every_event_with_its_details(
    sandbox: Api,
    gateway: str,
    http: aiohttp.ClientSession,
    collector: Collector,
    kind: str,
    detail: str | None,
    state: str | None,
) -> None:
    [update] = await emitted(sandbox, gateway, http, collector, field="account_update", event=kind)
    assert isinstance(update, AccountUpdate)
    assert (update.event, update.waba_id, update.state) == (kind, WABA_ID, state)
    assert set(update.details) == ({detail} if detail else set())
    assert update.needs_attention == (
        state in {"restricted", "violation", "disabled", "offboarded"}
    )


async def test_a_disabled_account(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [update] = await emitted(
        sandbox, gateway, http, collector, field="account_update", event="ACCOUNT_DISABLED"
    )
    assert isinstance(update, AccountUpdate) and update.event == "DISABLED_UPDATE"
    assert update.details["ban_info"]["waba_ban_state"] == "DISABLE"
    assert (update.state, update.needs_attention) == ("disabled", True)


async def test_phone_number_quality_and_name(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [quality] = await emitted(
        sandbox, gateway, http, collector, field="phone_number_quality_update", event="DOWNGRADE"
    )
    assert isinstance(quality, PhoneNumberQuality)
    assert (quality.event, quality.old_limit, quality.current_limit) == (
        "DOWNGRADE",
        "TIER_10K",
        "TIER_2K",
    )
    assert quality.dropped and quality.display_phone_number == "15550000001"
    [name] = await emitted(
        sandbox, gateway, http, collector, field="phone_number_name_update", decision="REJECTED"
    )
    assert isinstance(name, PhoneNumberName)
    assert (name.decision, name.requested_verified_name, name.rejection_reason) == (
        "REJECTED",
        "Mensajero Demo",
        "NAME_FORMAT_UNACCEPTABLE",
    )


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("event", "reason", "detail"),
    [
        ("PAUSED", None, "other_info"),
        ("DISABLED", None, "disable_info"),
        ("REJECTED", "INVALID_FORMAT", "rejection_info"),
        ("APPROVED", None, None),
    ],
)
async def test_template_status_with_its_reason_category_and_details(
    sandbox: Api,
    gateway: str,
    http: aiohttp.ClientSession,
    collector: Collector,
    event: str,
    reason: str | None,
    detail: str | None,
) -> None:
    request: dict[str, Any] = {"field": "message_template_status_update", **HELLO, "event": event}
    if reason:
        request["reason"] = reason
    [update] = await emitted(sandbox, gateway, http, collector, **request)
    assert isinstance(update, TemplateStatusUpdate)
    assert (update.event, update.template_name, update.language) == (event, *HELLO.values())
    assert update.category == "UTILITY" and update.template_id
    assert update.reason == (reason or "NONE")
    assert set(update.details) == ({detail} if detail else set())
    assert update.sendable is (event == "APPROVED")


async def test_template_quality_category_and_components(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [quality] = await emitted(
        sandbox, gateway, http, collector, field="message_template_quality_update", **HELLO
    )
    assert isinstance(quality, TemplateQualityUpdate)
    assert (quality.previous_quality, quality.new_quality) == ("GREEN", "YELLOW")
    assert quality.template_name == "hello_world"

    [announced] = await emitted(
        sandbox, gateway, http, collector, field="template_category_update", impending=True, **HELLO
    )
    assert isinstance(announced, TemplateCategoryUpdate)
    assert (announced.previous_category, announced.new_category) == ("UTILITY", "MARKETING")
    assert announced.effective_at is not None and announced.effective_at > announced.occurred_at
    [made] = await emitted(
        sandbox, gateway, http, collector, field="template_category_update", **HELLO
    )
    assert isinstance(made, TemplateCategoryUpdate) and made.effective_at is None
    assert (made.previous_category, made.new_category, made.made_marketing) == (
        "UTILITY",
        "MARKETING",
        True,
    )

    [components] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="message_template_components_update",
        body="Hola {{1}}",
        footer="Mensajero",
        **HELLO,
    )
    assert isinstance(components, TemplateComponentsUpdate)
    assert (components.body, components.footer) == ("Hola {{1}}", "Mensajero")


# --------------------------------------------------------------------------- calls


async def test_a_call_connects_and_ends(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    [connect] = await emitted(sandbox, gateway, http, collector, field="calls", customer=PHONE)
    assert isinstance(connect, CallEvent)
    assert (connect.event, connect.direction, connect.customer.phone) == (
        "connect",
        "USER_INITIATED",
        PHONE,
    )
    assert connect.session is not None and connect.session["sdp_type"] == "offer"
    [end] = await emitted(
        sandbox, gateway, http, collector, field="calls", customer=PHONE, event="terminate"
    )
    assert isinstance(end, CallEvent) and end.call_id == connect.call_id
    assert (end.status, end.duration_seconds) == ("COMPLETED", 60)
    assert end.started_at is not None and end.ended_at is not None
    assert (end.ended_at - end.started_at).total_seconds() == 60


async def test_a_business_call_status_is_not_a_message_status(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    await phoneless_customer(sandbox, collector)
    [ringing] = await emitted(
        sandbox,
        gateway,
        http,
        collector,
        field="calls",
        customer=BSUID,
        event="status",
        direction="BUSINESS_INITIATED",
        status="RINGING",
        biz_opaque_callback_data="call-7",
    )
    assert isinstance(ringing, CallStatus)
    assert (ringing.status, ringing.customer.user_id, ringing.customer.phone) == (
        "RINGING",
        BSUID,
        None,
    )
    assert ringing.call_id.startswith("wacid.") and ringing.biz_opaque_callback_data == "call-7"
    assert collector.of_type(MessageStatus) == []


# --------------------------------------------------------------------------- the rest


async def test_a_field_no_model_covers_is_published_as_it_came(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    value = {"event": "SOMETHING_NEW", "detail": {"nested": [1, 2]}}
    [event] = await emitted(
        sandbox, gateway, http, collector, field="business_capability_update", raw=value
    )
    assert isinstance(event, UnhandledField)
    assert (event.field, event.value, event.waba_id) == (
        "business_capability_update",
        value,
        WABA_ID,
    )


KINDS: list[dict[str, Any]] = [
    {"field": "smb_message_echoes", "customer": PHONE},
    {"field": "history", "customer": PHONE},
    {"field": "smb_app_state_sync", "customer": PHONE},
    {"field": "user_preferences", "customer": PHONE},
    {"field": "account_update"},
    {"field": "phone_number_quality_update"},
    {"field": "phone_number_name_update"},
    {"field": "message_template_status_update", **HELLO},
    {"field": "message_template_quality_update", **HELLO},
    {"field": "template_category_update", **HELLO, "impending": True},
    {"field": "message_template_components_update", **HELLO},
    {"field": "calls", "customer": PHONE},
    {"field": "calls", "customer": PHONE, "event": "status", "direction": "BUSINESS_INITIATED"},
    {"field": "messages", "type": "call_permission_reply", "customer": PHONE},
    {"field": "messages", "type": "customer_identity_changed", "customer": PHONE},
    {"field": "business_capability_update", "raw": {"max_daily_conversations": 1000}},
]


async def test_meta_retrying_any_webhook_gives_the_same_event_ids(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    payloads = [(await sandbox.emit(**kind))["payload"] for kind in KINDS]
    first: list[Event] = await collector.wait(len(KINDS))
    assert len({type(event) for event in first}) >= 13
    for payload in payloads:  # as Meta retries: the same bodies again
        assert await post(http, gateway, payload) == (200, "ok")
    again = await collector.wait(2 * len(KINDS))
    assert [e.event_id for e in again[len(KINDS) :]] == [e.event_id for e in first]
    assert len({e.event_id for e in first}) == len(KINDS)


# --------------------------------------------------------------------------- the feed


INFORMATIONAL: list[dict[str, Any]] = [
    {"field": "history", "customer": PHONE},
    {"field": "smb_app_state_sync", "customer": PHONE},
    {"field": "calls", "customer": PHONE},
    {"field": "calls", "customer": PHONE, "event": "status", "direction": "BUSINESS_INITIATED"},
    {"field": "phone_number_name_update"},
    {"field": "message_template_components_update", **HELLO},
    {"field": "business_capability_update", "raw": {"max_daily_conversations": 1000}},
]


async def test_informational_events_go_to_the_feed_and_are_never_parked(
    sandbox: Api, gateway: str, http: aiohttp.ClientSession, bus: Bus
) -> None:
    """Nothing in Mensajero consumes them (no collector here either): the gateway's bounded feed
    keeps them for integrations. An event a service consumes is parked while nobody is bound."""
    for kind in INFORMATIONAL:
        await sandbox.emit(**kind)
    await sandbox.emit(field="account_update", event="ACCOUNT_RESTRICTION")
    feed = feed_queue_name(bus, "gateway")
    unrouted = bus.names.queue(UNROUTED_SERVICE)

    async def settled() -> bool:
        found = (await bus.message_count(feed), await bus.message_count(unrouted))
        return found == (len(INFORMATIONAL), 1)

    await wait_for(settled, message="the informational events fed, the account update parked")
    async with http.get(gateway + "/metrics") as response:
        text = await response.text()
    parked = [
        line for line in text.splitlines() if line.startswith("gateway_events_unrouted_total")
    ]
    assert parked == [f'gateway_events_unrouted_total{{type="{AccountUpdate.TYPE}"}} 1.0']


def test_the_feed_takes_only_what_no_mensajero_service_consumes() -> None:
    assert len(set(FEED_EVENTS)) == len(FEED_EVENTS)
    for event_type in FEED_EVENTS:
        producer, consumers = FLOWS[event_type]
        assert producer == "gateway" and consumers == (), event_type
