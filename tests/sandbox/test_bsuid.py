"""Customers without a phone number (business-scoped user ids), and sends to them by `recipient`.

Shapes from Meta's business-scoped user ids page: `contacts[].user_id`, `messages[].from_user_id`
(`from` and `wa_id` left out when the phone is hidden), `recipient` in the send, `user_id` in its
answer, `recipient_user_id` in statuses and `contacts[]` beside them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import wait_for
from tests.sandbox.support import (
    CUSTOMER,
    DATA,
    Api,
    Sink,
    StartSandbox,
    assert_meta_error,
    template_message,
    text_message,
    to_bsuid,
)

ANA = "AR.13491208655302741918"
ANA_PARENT = "AR.ENT.11815799212886844830"
TEMPLATES = str(DATA / "templates.yaml")


async def ana_writes(api: Api, text: str = "Hola", **extra: Any) -> dict[str, Any]:
    status, answer = await api.inbound(
        user_id=ANA, username="ana.cliente", name="Ana", text=text, **extra
    )
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


async def test_a_phone_less_customer_writes_without_a_phone(api: Api, sink: Sink) -> None:
    answer = await ana_writes(api)
    assert answer["user_id"] == ANA and answer["phone"] is None
    [received] = sink.of_field("messages")
    assert received.value["contacts"] == [
        {"profile": {"name": "Ana", "username": "ana.cliente"}, "user_id": ANA}
    ]
    [message] = received.value["messages"]
    assert "from" not in message
    assert message["from_user_id"] == ANA
    assert "from_parent_user_id" not in message
    assert message["id"] == answer["wamid"]
    assert message["text"] == {"body": "Hola"}


async def test_a_parent_bsuid_is_carried(api: Api, sink: Sink) -> None:
    await ana_writes(api, parent_user_id=ANA_PARENT)
    [contact] = sink.received[0].value["contacts"]
    assert contact["parent_user_id"] == ANA_PARENT
    [message] = sink.messages()
    assert message["from_parent_user_id"] == ANA_PARENT


async def test_parent_bsuids_for_everyone_by_setting(
    start_sandbox: StartSandbox, sink: Sink
) -> None:
    api = await start_sandbox(parent_bsuids=True)
    await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    [contact] = sink.received[0].value["contacts"]
    assert contact["parent_user_id"].startswith("AR.ENT.")
    assert sink.messages()[0]["from_parent_user_id"] == contact["parent_user_id"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"text": "Hola"}, "give 'from' (a phone) or 'user_id'"),
        ({"user_id": "not-a-bsuid", "text": "Hola"}, "not a business-scoped user id"),
        ({"user_id": ANA, "parent_user_id": "AR-1", "text": "a"}, "not a business-scoped"),
    ],
)
async def test_bad_identities_are_400(
    api: Api, sink: Sink, fields: dict[str, Any], reason: str
) -> None:
    status, body = await api.inbound(**fields)
    assert status == 400
    assert reason in body["error"]
    assert sink.received == []


async def test_identifiers_of_two_customers_conflict(api: Api, sink: Sink) -> None:
    await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    status, body = await api.inbound(**{"from": CUSTOMER, "user_id": ANA, "text": "Hola"})
    assert status == 400
    assert "user_changed_user_id" in body["error"]
    assert len(sink.received) == 1


async def test_the_business_answers_by_recipient(api: Api, sink: Sink) -> None:
    await ana_writes(api)
    status, answer = await api.send(to_bsuid(text_message(body="¡Hola Ana!"), ANA))
    assert status == 200, answer
    assert answer["contacts"] == [{"input": ANA, "user_id": ANA}]
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: len(sink.statuses(wamid)) == 3, timeout=5, message="3 statuses")
    for status_item in sink.statuses(wamid):
        assert status_item["recipient_user_id"] == ANA
        assert "recipient_id" not in status_item
    for received in sink.received[1:]:
        [contact] = received.value["contacts"]
        assert "wa_id" not in contact
        assert contact["user_id"] == ANA
        # The username rides on delivered and read, not on sent.
        has_username = "username" in contact.get("profile", {})
        assert has_username == (received.value["statuses"][0]["status"] != "sent")
    # The customer's messages are read at /_sandbox/phones/<user_id>/messages.
    [received_message] = await api.inbox(quote(ANA, safe=""))
    assert received_message["wamid"] == wamid
    assert received_message["body"]["text"]["body"] == "¡Hola Ana!"


async def test_a_parent_bsuid_reaches_the_customer(api: Api, sink: Sink) -> None:
    await ana_writes(api, parent_user_id=ANA_PARENT)
    status, answer = await api.send(to_bsuid(text_message(), ANA_PARENT))
    assert status == 200, answer
    assert answer["contacts"] == [{"input": ANA_PARENT, "user_id": ANA_PARENT}]
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: len(sink.statuses(wamid)) == 3, timeout=5, message="3 statuses")
    [sent, *_] = sink.statuses(wamid)
    assert sent["recipient_user_id"] == ANA
    assert sent["recipient_parent_user_id"] == ANA_PARENT
    assert len(await api.inbox(ANA)) == 1


async def test_to_takes_precedence_over_recipient(api: Api) -> None:
    await ana_writes(api)
    status, answer = await api.send({**text_message(), "recipient": ANA})
    assert status == 200, answer
    assert answer["contacts"] == [{"input": CUSTOMER, "wa_id": CUSTOMER.lstrip("+")}]
    assert len(await api.inbox(CUSTOMER)) == 1
    assert await api.inbox(ANA) == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}},
         "to or recipient"),
        (to_bsuid(text_message(), "5491135722871"), "business-scoped user ID"),
        (to_bsuid(text_message(), ""), "business-scoped user ID"),
        ({**text_message(), "recipient": 7}, "recipient must be a string"),
    ],
)  # fmt: skip
async def test_bad_recipients_are_100(api: Api, body: dict[str, Any], detail: str) -> None:
    status, answer = await api.send(body)
    assert detail in assert_meta_error(status, answer, 100)


async def test_authentication_templates_need_a_phone(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(templates=TEMPLATES)
    message = template_message("auth_code", "en_US", "123456")
    status, answer = await api.send(to_bsuid(message, ANA))
    details = assert_meta_error(status, answer, 131062)
    assert "BSUID" in details
    status, answer = await api.send(message)
    assert status == 200, answer
    # A marketing or utility template is fine by BSUID.
    status, answer = await api.send(
        to_bsuid(template_message("reengage_customer", "es_AR", "Ana"), ANA)
    )
    assert status == 200, answer


# --- one customer, whichever identifier ----------------------------------------------------


async def test_window_is_shared_by_phone_and_bsuid(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(enforce_window=True)
    await api.inbound(**{"from": CUSTOMER, "user_id": ANA, "text": "Hola"})
    assert (await api.send(to_bsuid(text_message(), ANA)))[0] == 200
    assert (await api.send(text_message()))[0] == 200
    # Someone who never wrote: the window is closed, by BSUID as by phone.
    status, answer = await api.send(to_bsuid(text_message(), "AR.999"))
    assert_meta_error(status, answer, 131047)


async def test_pair_limit_is_shared_by_phone_and_bsuid(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(pair_burst=2, pair_interval_seconds=3600)
    await api.inbound(**{"from": CUSTOMER, "user_id": ANA, "text": "Hola"})
    assert (await api.send(text_message()))[0] == 200
    assert (await api.send(to_bsuid(text_message(), ANA)))[0] == 200
    status, answer = await api.send(text_message())
    assert_meta_error(status, answer, 131056)


async def test_one_inbox_whichever_identifier(api: Api) -> None:
    await api.inbound(**{"from": CUSTOMER, "user_id": ANA, "text": "Hola"})
    await api.send(text_message(body="uno"))
    await api.send(to_bsuid(text_message(body="dos"), ANA))
    by_phone = [m["body"]["text"]["body"] for m in await api.inbox(CUSTOMER)]
    by_bsuid = [m["body"]["text"]["body"] for m in await api.inbox(ANA)]
    assert by_phone == by_bsuid == ["uno", "dos"]
    answer = await api.get(f"/_sandbox/phones/{ANA}/messages")
    assert answer["phone"] == CUSTOMER and answer["user_id"] == ANA


async def test_a_hidden_phone_stays_out_of_statuses(api: Api, sink: Sink) -> None:
    await api.inbound(**{"from": CUSTOMER, "user_id": ANA, "withhold_phone": True, "text": "a"})
    _, by_bsuid = await api.send(to_bsuid(text_message(), ANA))
    _, by_phone = await api.send(text_message())
    bsuid_wamid, phone_wamid = by_bsuid["messages"][0]["id"], by_phone["messages"][0]["id"]
    await wait_for(
        lambda: len(sink.statuses(bsuid_wamid)) == len(sink.statuses(phone_wamid)) == 3,
        timeout=5,
        message="the statuses of both sends",
    )
    assert all("recipient_id" not in s for s in sink.statuses(bsuid_wamid))
    # Sent to the phone: Meta names the phone it was sent to.
    assert all(s["recipient_id"] == CUSTOMER.lstrip("+") for s in sink.statuses(phone_wamid))


async def test_faults_set_by_bsuid_reach_sends_by_phone(api: Api) -> None:
    await api.inbound(**{"from": CUSTOMER, "user_id": ANA, "text": "Hola"})
    await api.faults(recipient=ANA, error_code=131026, count=1)
    status, answer = await api.send(text_message())
    assert_meta_error(status, answer, 131026)
    assert (await api.send(text_message()))[0] == 200
    status, body = await api.request(
        "POST", "/_sandbox/faults", token=None, json={"recipient": "x"}
    )
    assert status == 400 and "business-scoped user id" in body["error"]


async def test_failed_statuses_name_the_recipient_as_it_was_addressed(api: Api, sink: Sink) -> None:
    await api.inbound(**{"from": CUSTOMER, "user_id": ANA, "text": "Hola"})
    await api.faults(recipient=ANA, async_failure_code=131026, count=2)
    _, by_bsuid = await api.send(to_bsuid(text_message(), ANA))
    _, by_phone = await api.send(text_message())
    wamids = [by_bsuid["messages"][0]["id"], by_phone["messages"][0]["id"]]
    await wait_for(
        lambda: all(sink.statuses(w) for w in wamids), timeout=5, message="two failed statuses"
    )
    [failed_bsuid], [failed_phone] = (sink.statuses(w) for w in wamids)
    assert failed_bsuid["status"] == failed_phone["status"] == "failed"
    assert failed_bsuid["recipient_user_id"] == ANA
    # Sent to a phone: Meta leaves recipient_user_id out of the failed status.
    assert failed_phone["recipient_id"] == CUSTOMER.lstrip("+")
    assert "recipient_user_id" not in failed_phone
    # Meta leaves contacts out of failed statuses.
    assert all("contacts" not in r.value for r in sink.received if r.value.get("statuses"))
