"""`POST /_sandbox/webhooks/emit` for the account, the number and the templates; and bad requests.

Shapes from Meta's `account_update`, `phone_number_quality_update`, `phone_number_name_update`,
`message_template_status_update`, `message_template_quality_update`, `template_category_update`
and `message_template_components_update` reference pages.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import wait_for
from tests.sandbox.support import (
    CUSTOMER,
    TOKEN,
    WABA_ID,
    Api,
    Received,
    Sink,
    StartSandbox,
    assert_meta_error,
    template_message,
    text_message,
)

BUSINESS = "15550000001"
HELLO = {"name": "hello_world", "language": "en_US"}


def value_of(sink: Sink, field: str) -> dict[str, Any]:
    [received] = sink.of_field(field)
    return account_value(received)


def account_value(received: Received) -> dict[str, Any]:
    """An account-level webhook: `entry[].time`, and a value without messaging_product."""
    [entry] = received.json["entry"]
    assert entry["id"] == WABA_ID and isinstance(entry["time"], int)
    assert "messaging_product" not in received.value
    return received.value


# The detail object Meta's account_update page gives each event (None: the event alone).
ACCOUNT_EVENTS = [
    ("ACCOUNT_RESTRICTION", "restriction_info"),
    ("ACCOUNT_VIOLATION", "violation_info"),
    ("DISABLED_UPDATE", "ban_info"),
    ("ACCOUNT_OFFBOARDED", None),
    ("ACCOUNT_RECONNECTED", None),
    ("ACCOUNT_DELETED", None),
    ("PARTNER_ADDED", "waba_info"),
    ("PARTNER_REMOVED", "waba_info"),
    ("PARTNER_APP_INSTALLED", "waba_info"),
    ("PARTNER_APP_UNINSTALLED", "waba_info"),
    ("AD_ACCOUNT_LINKED", "waba_info"),
    ("MM_LITE_TERMS_SIGNED", "waba_info"),
    ("VOLUME_BASED_PRICING_TIER_UPDATE", "volume_tier_info"),
    ("PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE", "partner_client_certification_info"),
    ("AUTH_INTL_PRICE_ELIGIBILITY_UPDATE", "auth_international_rate_eligibility"),
    ("BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE", "country"),
]


@pytest.mark.parametrize(("event", "detail"), ACCOUNT_EVENTS, ids=[e for e, _ in ACCOUNT_EVENTS])
async def test_account_update_events(api: Api, sink: Sink, event: str, detail: str | None) -> None:
    await api.emit(field="account_update", event=event)
    value = value_of(sink, "account_update")
    assert value["event"] == event
    assert set(value) == ({"event", detail} if detail else {"event"})


async def test_account_update_details(api: Api, sink: Sink) -> None:
    await api.emit(field="account_update", event="ACCOUNT_RESTRICTION")
    await api.emit(field="account_update", event="VOLUME_BASED_PRICING_TIER_UPDATE")
    restriction, tier = (account_value(r) for r in sink.of_field("account_update"))
    [info] = restriction["restriction_info"]
    assert info["restriction_type"] == "RESTRICTED_BIZ_INITIATED_MESSAGING"
    assert isinstance(info["expiration"], int)
    assert set(tier["volume_tier_info"]) == {
        "tier_update_time", "pricing_category", "tier", "effective_month", "region",
    }  # fmt: skip
    # What a request gives replaces the default detail object.
    violation = {"violation_type": "ADULT"}
    await api.emit(field="account_update", event="ACCOUNT_VIOLATION", violation_info=violation)
    assert account_value(sink.of_field("account_update")[-1])["violation_info"] == violation


async def test_a_disabled_account_refuses_sends_until_reinstated(api: Api, sink: Sink) -> None:
    # ACCOUNT_DISABLED is what some partners call it; Meta sends DISABLED_UPDATE + DISABLE.
    await api.emit(field="account_update", event="ACCOUNT_DISABLED")
    value = value_of(sink, "account_update")
    assert value["event"] == "DISABLED_UPDATE"
    assert value["ban_info"]["waba_ban_state"] == "DISABLE" and value["ban_info"]["waba_ban_date"]
    status, answer = await api.send(text_message())
    assert_meta_error(status, answer, 131031, http_status=403)
    reinstate = {"waba_ban_state": "REINSTATE", "waba_ban_date": "May 1, 2026"}
    await api.emit(field="account_update", event="DISABLED_UPDATE", ban_info=reinstate)
    assert (await api.send(text_message()))[0] == 200


async def test_a_restricted_account_refuses_business_initiated_messages(
    start_sandbox: StartSandbox,
) -> None:
    api = await start_sandbox(enforce_window=True)
    await api.emit(field="account_update", event="ACCOUNT_RESTRICTION")
    outside = template_message("reengage_customer", "es_AR", "Ana")
    status, answer = await api.send(outside)
    assert_meta_error(status, answer, 368, http_status=403)
    # Replying inside the customer's window is still allowed.
    await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    assert (await api.send(text_message()))[0] == 200
    assert (await api.send(outside))[0] == 200
    # An expired restriction no longer applies.
    expired = [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": 1}]
    await api.emit(field="account_update", event="ACCOUNT_RESTRICTION", restriction_info=expired)
    status, answer = await api.send(
        template_message("reengage_customer", "es_AR", "B", to="+5491100009999")
    )
    assert status == 200, answer


async def test_phone_number_quality_update(api: Api, sink: Sink) -> None:
    await api.emit(field="phone_number_quality_update")
    await api.emit(field="phone_number_quality_update", event="DOWNGRADE")
    upgrade, downgrade = (account_value(r) for r in sink.of_field("phone_number_quality_update"))
    assert upgrade == {
        "display_phone_number": BUSINESS,
        "event": "THROUGHPUT_UPGRADE",
        "current_limit": "TIER_UNLIMITED",
        "max_daily_conversations_per_business": "TIER_UNLIMITED",
    }
    assert downgrade["old_limit"] == "TIER_10K" and downgrade["current_limit"] == "TIER_2K"


async def test_phone_number_name_update(api: Api, sink: Sink) -> None:
    await api.emit(field="phone_number_name_update", decision="REJECTED")
    assert value_of(sink, "phone_number_name_update") == {
        "display_phone_number": BUSINESS,
        "decision": "REJECTED",
        "requested_verified_name": "Mensajero Demo",
        "rejection_reason": "NAME_FORMAT_UNACCEPTABLE",
    }


# --- templates ------------------------------------------------------------------------------


async def listed(api: Api, name: str, language: str) -> dict[str, Any]:
    path = f"/v23.0/{WABA_ID}/message_templates"
    fields = "name,language,status,category,quality_score,components,id,previous_category"
    status, body = await api.request("GET", path, params={"name": name, "fields": fields})
    assert status == 200, body
    [found] = [t for t in body["data"] if t["name"] == name and t["language"] == language]
    result: dict[str, Any] = found
    return result


@pytest.mark.parametrize(
    ("event", "code"),
    [("PAUSED", 132015), ("DISABLED", 132016), ("REJECTED", 132001), ("FLAGGED", 132001)],
)
async def test_a_template_not_approved_is_refused(
    api: Api, sink: Sink, event: str, code: int
) -> None:
    await api.emit(field="message_template_status_update", event=event, **HELLO)
    value = value_of(sink, "message_template_status_update")
    assert value["event"] == event
    assert value["message_template_name"] == "hello_world"
    assert value["message_template_language"] == "en_US"
    assert isinstance(value["message_template_id"], int)
    assert value["message_template_category"] == "UTILITY"
    assert (await listed(api, **HELLO))["status"] == event
    status, answer = await api.send(template_message("hello_world", "en_US"))
    assert_meta_error(status, answer, code)
    await api.emit(field="message_template_status_update", event="REINSTATED", **HELLO)
    assert (await listed(api, **HELLO))["status"] == "APPROVED"
    assert (await api.send(template_message("hello_world", "en_US")))[0] == 200


async def test_status_update_details(api: Api, sink: Sink) -> None:
    for event in ("PAUSED", "DISABLED", "REJECTED"):
        await api.emit(field="message_template_status_update", event=event, **HELLO)
    paused, disabled, rejected = (
        account_value(r) for r in sink.of_field("message_template_status_update")
    )
    assert paused["reason"] == "NONE" and paused["other_info"]["title"] == "FIRST_PAUSE"
    assert isinstance(disabled["disable_info"]["disable_date"], int)
    assert rejected["reason"] == "INVALID_FORMAT"
    assert set(rejected["rejection_info"]) == {"reason", "recommendation"}


async def test_quality_update(api: Api, sink: Sink) -> None:
    await api.emit(field="message_template_quality_update", new_quality_score="RED", **HELLO)
    value = value_of(sink, "message_template_quality_update")
    assert value["previous_quality_score"] == "GREEN" and value["new_quality_score"] == "RED"
    assert value["message_template_name"] == "hello_world"
    assert (await listed(api, **HELLO))["quality_score"]["score"] == "RED"
    # Quality alone does not stop a template.
    assert (await api.send(template_message("hello_world", "en_US")))[0] == 200


async def test_category_update_changes_the_price(api: Api, sink: Sink) -> None:
    await api.emit(field="template_category_update", impending=True, **HELLO)
    await api.emit(field="template_category_update", new_category="MARKETING", **HELLO)
    impending, done = (account_value(r) for r in sink.of_field("template_category_update"))
    assert impending["new_category"] == "UTILITY" and impending["correct_category"] == "MARKETING"
    assert isinstance(impending["category_update_timestamp"], int)
    assert done["previous_category"] == "UTILITY" and done["new_category"] == "MARKETING"
    template = await listed(api, **HELLO)
    assert template["category"] == "MARKETING" and template["previous_category"] == "UTILITY"
    _, answer = await api.send(template_message("hello_world", "en_US"))
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: sink.statuses(wamid), timeout=5, message="a status")
    assert sink.statuses(wamid)[0]["pricing"]["category"] == "marketing"


async def test_components_update_changes_what_a_send_must_fill(api: Api, sink: Sink) -> None:
    body = "Hola {{1}}, tu pedido {{2}} está listo."
    await api.emit(field="message_template_components_update", body=body, footer="Gracias", **HELLO)
    value = value_of(sink, "message_template_components_update")
    assert value["message_template_element"] == body
    assert value["message_template_footer"] == "Gracias"
    assert value["message_template_title"] == "Hello World"
    components = (await listed(api, **HELLO))["components"]
    assert {"type": "BODY", "text": body} in components
    status, answer = await api.send(template_message("hello_world", "en_US"))
    assert_meta_error(status, answer, 132000)
    assert (await api.send(template_message("hello_world", "en_US", "Ana", "42")))[0] == 200


# --- raw values and bad requests --------------------------------------------------------------


async def test_any_field_can_be_posted_as_it_is(api: Api, sink: Sink) -> None:
    raw = {"display_phone_number": BUSINESS, "username": "mensajero", "status": "approved"}
    await api.emit(field="business_username_updates", raw=raw)
    assert value_of(sink, "business_username_updates") == raw


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"field": "nope"}, "field must be one of"),
        ({"field": "messages", "type": "text"}, "POST /_sandbox/inbound"),
        ({"field": "user_preferences", "customer": CUSTOMER, "value": "maybe"}, "value"),
        ({"field": "user_preferences"}, "customer"),
        ({"field": "calls", "customer": "nobody"}, "not a phone number"),
        ({"field": "message_template_status_update", "name": "x", "language": "es"}, "no template"),
        ({"field": "message_template_status_update", **HELLO, "event": "NOPE"}, "event must be"),
        ({"field": "x", "raw": []}, "raw"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_emits_are_400(api: Api, sink: Sink, body: Any, reason: str) -> None:
    status, answer = await api.request("POST", "/_sandbox/webhooks/emit", token=None, json=body)
    assert status == 400, answer
    assert reason in answer["error"]
    assert sink.received == []


async def test_kinds_lists_every_kind_with_its_defaults(api: Api) -> None:
    kinds = (await api.get("/_sandbox/webhooks/kinds"))["kinds"]
    assert kinds["user_preferences"]["value"] == "stop"
    assert kinds["calls"]["event"] == "connect"
    assert "messages/user_changed_number" in kinds
    assert len(kinds) == 17


async def test_gateway_failure_is_reported_and_retried(api: Api, sink: Sink) -> None:
    sink.answers = [500]
    status, answer = await api.request(
        "POST", "/_sandbox/webhooks/emit", token=None, json={"field": "phone_number_name_update"}
    )
    assert status == 200 and answer["gateway_status"] == 500
    await wait_for(lambda: len(sink.received) == 2, timeout=5, message="the retry")
    assert TOKEN not in sink.received[1].body.decode()
