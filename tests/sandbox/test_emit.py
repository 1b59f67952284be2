"""`POST /_sandbox/webhooks/emit`: each 2026 webhook kind in Meta's shape, signed, and its state.

Field names are checked against Meta's webhook reference pages (and the business-scoped user ids
page for the BSUID fields); see sandbox/README.md for the list and the sources.
"""

from __future__ import annotations

import pytest

from tests.helpers import wait_for
from tests.sandbox.support import (
    CUSTOMER,
    PHONE_ID,
    Api,
    Received,
    Sink,
    StartSandbox,
    assert_meta_error,
    template_message,
    text_message,
    to_bsuid,
)

ANA = "AR.13491208655302741918"
BUSINESS = "15550000001"
METADATA = {"display_phone_number": BUSINESS, "phone_number_id": PHONE_ID}


def only(sink: Sink, field: str) -> Received:
    [received] = sink.of_field(field)
    return received


async def phone_less_ana(api: Api) -> None:
    status, _ = await api.inbound(user_id=ANA, username="ana", name="Ana", text="Hola")
    assert status == 200


# --- coexistence ---------------------------------------------------------------------------


async def test_smb_message_echo(api: Api, sink: Sink) -> None:
    await api.inbound(**{"from": CUSTOMER, "name": "Ana", "text": "Hola"})
    answer = await api.emit(field="smb_message_echoes", customer=CUSTOMER, text="Te atiendo yo")
    value = only(sink, "smb_message_echoes").value
    assert value["metadata"] == METADATA
    assert value["contacts"] == [
        {
            "profile": {"name": "Ana"},
            "wa_id": CUSTOMER.lstrip("+"),
            "user_id": value["contacts"][0]["user_id"],
        }
    ]
    [echo] = value["message_echoes"]
    assert echo == {
        "from": BUSINESS,
        "to": CUSTOMER.lstrip("+"),
        "to_user_id": value["contacts"][0]["user_id"],
        "id": answer["wamid"],
        "timestamp": echo["timestamp"],
        "type": "text",
        "text": {"body": "Te atiendo yo"},
    }
    # The customer's phone shows what the app sent.
    [record] = await api.inbox()
    assert record["source"] == "business_app" and record["body"]["text"]["body"] == "Te atiendo yo"


async def test_smb_message_echo_to_a_phone_less_customer(api: Api, sink: Sink) -> None:
    await phone_less_ana(api)
    await api.emit(field="smb_message_echoes", customer=ANA, revoke="wamid.OLD")
    [echo] = only(sink, "smb_message_echoes").value["message_echoes"]
    assert "to" not in echo and echo["to_user_id"] == ANA
    assert echo["type"] == "revoke" and echo["revoke"] == {"original_message_id": "wamid.OLD"}
    await api.emit(field="smb_message_echoes", customer=ANA, edit="wamid.OLD", text="corregido")
    [edit] = sink.of_field("smb_message_echoes")[1].value["message_echoes"]
    assert edit["edit"] == {
        "original_message_id": "wamid.OLD",
        "message": {"type": "text", "text": {"body": "corregido"}},
    }


async def test_an_echo_does_not_open_the_window(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(enforce_window=True)
    await api.emit(field="smb_message_echoes", customer=CUSTOMER)
    status, answer = await api.send(text_message())
    assert_meta_error(status, answer, 131047)


async def test_history(api: Api, sink: Sink) -> None:
    await phone_less_ana(api)
    await api.emit(field="history", customer=ANA, progress=55, chunk_order=2, phase=1)
    [chunk] = only(sink, "history").value["history"]
    assert chunk["metadata"] == {"phase": 1, "chunk_order": 2, "progress": 55}
    [thread] = chunk["threads"]
    assert "id" not in thread  # the phone is hidden
    assert thread["context"] == {"user_id": ANA, "username": "ana"}
    from_customer, from_business = thread["messages"]
    assert from_customer["from_user_id"] == ANA and "from" not in from_customer
    assert from_business["from"] == BUSINESS
    for message in thread["messages"]:
        assert message["type"] == "text" and message["history_context"] == {"status": "READ"}
        assert message["id"].startswith("wamid.") and message["timestamp"].isdigit()


async def test_history_declined(api: Api, sink: Sink) -> None:
    await api.emit(field="history", customer=CUSTOMER, declined=True)
    [chunk] = only(sink, "history").value["history"]
    [error] = chunk["errors"]
    assert error["code"] == 2593109
    assert error["error_data"] == {"details": "History sharing is turned off by the business"}


async def test_smb_app_state_sync(api: Api, sink: Sink) -> None:
    await api.emit(field="smb_app_state_sync", customer=CUSTOMER, full_name="Pablo Morales")
    await api.emit(field="smb_app_state_sync", customer=CUSTOMER, action="remove")
    added, removed = (r.value["state_sync"][0] for r in sink.of_field("smb_app_state_sync"))
    assert added["type"] == "contact" and added["action"] == "add"
    assert added["contact"]["full_name"] == "Pablo Morales"
    assert added["contact"]["first_name"] == "Pablo"
    assert added["contact"]["phone_number"] == CUSTOMER.lstrip("+")
    assert added["contact"]["user_id"].startswith("AR.")
    assert added["metadata"]["timestamp"].isdigit()
    assert "full_name" not in removed["contact"] and removed["action"] == "remove"


# --- marketing preferences ------------------------------------------------------------------


async def test_user_preferences(api: Api, sink: Sink) -> None:
    await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    await api.emit(field="user_preferences", customer=CUSTOMER, value="stop")
    value = only(sink, "user_preferences").value
    [item] = value["user_preferences"]
    assert item["wa_id"] == CUSTOMER.lstrip("+")
    assert item["user_id"] == value["contacts"][0]["user_id"]
    assert item["category"] == "marketing_messages" and item["value"] == "stop"
    assert item["detail"] == "User requested to stop marketing messages"
    assert isinstance(item["timestamp"], int)


@pytest.fixture
async def marketing_api(start_sandbox: StartSandbox) -> Api:
    """A sandbox where reengage_customer is a MARKETING template."""
    api = await start_sandbox()
    await api.emit(
        field="template_category_update",
        name="reengage_customer",
        language="es_AR",
        new_category="MARKETING",
    )
    return api


async def test_a_stop_refuses_marketing_until_resume(marketing_api: Api, sink: Sink) -> None:
    api = marketing_api
    marketing = template_message("reengage_customer", "es_AR", "Ana")
    utility = template_message("handoff_agent_alert", "es_AR", "a", "b")
    await api.emit(field="user_preferences", customer=CUSTOMER, value="stop")
    status, answer = await api.send(marketing)
    assert_meta_error(status, answer, 131050)
    assert (await api.send(utility))[0] == 200
    await api.emit(field="user_preferences", customer=CUSTOMER, value="resume")
    assert (await api.send(marketing))[0] == 200
    await api.emit(field="user_preferences", customer=CUSTOMER, value="stop")
    await api.emit(field="user_preferences", customer=CUSTOMER, value="signup")
    [*_, signup] = sink.of_field("user_preferences")
    assert signup.value["user_preferences"][0]["signup_id"]
    assert (await api.send(marketing))[0] == 200


async def test_a_stop_reaches_sends_by_bsuid(marketing_api: Api) -> None:
    api = marketing_api
    await api.inbound(**{"from": CUSTOMER, "user_id": ANA, "text": "Hola"})
    await api.emit(field="user_preferences", customer=CUSTOMER, value="stop")
    marketing = to_bsuid(template_message("reengage_customer", "es_AR", "Ana"), ANA)
    status, answer = await api.send(marketing)
    assert_meta_error(status, answer, 131050)


async def test_a_stop_can_fail_asynchronously(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(marketing_stop_failure="async")
    await api.emit(
        field="template_category_update",
        name="reengage_customer",
        language="es_AR",
        new_category="MARKETING",
    )
    await api.emit(field="user_preferences", customer=CUSTOMER, value="stop")
    status, answer = await api.send(template_message("reengage_customer", "es_AR", "Ana"))
    assert status == 200, answer
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: sink.statuses(wamid), timeout=5, message="the failed status")
    [failed] = sink.statuses(wamid)
    assert failed["status"] == "failed" and failed["errors"][0]["code"] == 131050
    assert await api.inbox() == []


# --- identity changes -----------------------------------------------------------------------


async def test_user_changed_number_moves_the_customer(
    start_sandbox: StartSandbox, sink: Sink
) -> None:
    api = await start_sandbox(enforce_window=True)
    new_phone = "+5491144445555"
    _, wrote = await api.inbound(**{"from": CUSTOMER, "name": "Ana", "text": "Hola"})
    answer = await api.emit(
        field="messages", type="user_changed_number", customer=CUSTOMER, new_phone=new_phone
    )
    [received] = sink.of_field("messages")[1:]
    assert "contacts" not in received.value  # system messages carry no contacts
    [message] = received.value["messages"]
    assert message["from"] == CUSTOMER.lstrip("+")
    assert message["from_user_id"] == wrote["user_id"]
    assert message["type"] == "system"
    assert message["system"] == {
        "body": f"User Ana changed from {CUSTOMER.lstrip('+')} to {new_phone.lstrip('+')}",
        "wa_id": new_phone.lstrip("+"),
        "user_id": answer["user_id"],
        "type": "user_changed_number",
    }
    assert answer["user_id"] != wrote["user_id"]  # a new number is a new BSUID
    # The window the customer opened follows them to the new number and the new BSUID.
    assert (await api.send(text_message(to=new_phone)))[0] == 200
    assert (await api.send(to_bsuid(text_message(), answer["user_id"])))[0] == 200
    assert len(await api.inbox(new_phone)) == 2
    # The old number is no longer theirs.
    status, body = await api.send(text_message(to=CUSTOMER))
    assert_meta_error(status, body, 131047)


async def test_user_changed_user_id_moves_the_customer(
    start_sandbox: StartSandbox, sink: Sink
) -> None:
    api = await start_sandbox(enforce_window=True)
    await phone_less_ana(api)
    answer = await api.emit(field="messages", type="user_changed_user_id", customer=ANA)
    [message] = sink.of_field("messages")[1].value["messages"]
    assert "from" not in message  # Meta: no phone number in this notification
    assert message["from_user_id"] == ANA
    new_id = answer["user_id"]
    assert message["system"] == {
        "body": f"User Ana changed from {ANA} to {new_id}",
        "user_id": new_id,
        "type": "user_changed_user_id",
    }
    assert new_id.startswith("AR.") and new_id != ANA
    assert (await api.send(to_bsuid(text_message(), new_id)))[0] == 200
    status, body = await api.send(to_bsuid(text_message(), ANA))
    assert_meta_error(status, body, 131047)


async def test_a_new_user_id_can_be_chosen_and_must_be_free(api: Api) -> None:
    await phone_less_ana(api)
    await api.inbound(**{"from": CUSTOMER, "user_id": "AR.777", "text": "Hola"})
    taken = {"field": "messages", "type": "user_changed_user_id", "new_user_id": "AR.777"}
    status, body = await api.request(
        "POST", "/_sandbox/webhooks/emit", token=None, json={**taken, "customer": ANA}
    )
    assert status == 400 and "another customer" in body["error"]
    answer = await api.emit(field="user_id_update", customer=ANA, new_user_id="AR.888")
    assert answer["user_id"] == "AR.888"


async def test_user_id_update(api: Api, sink: Sink) -> None:
    await api.inbound(**{"from": CUSTOMER, "name": "Ana", "user_id": ANA, "text": "Hola"})
    answer = await api.emit(field="user_id_update", customer=CUSTOMER)
    value = only(sink, "user_id_update").value
    assert value["contacts"] == [{"profile": {"name": "Ana"}, "wa_id": CUSTOMER.lstrip("+")}]
    [item] = value["user_id_update"]
    assert item["wa_id"] == CUSTOMER.lstrip("+")
    assert item["detail"] == "User id for Ana has been updated."
    assert item["user_id"] == {"previous": ANA, "current": answer["user_id"]}
    assert item["timestamp"].isdigit()


async def test_customer_identity_changed(api: Api, sink: Sink) -> None:
    await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    await api.emit(field="messages", type="customer_identity_changed", customer=CUSTOMER)
    [message] = sink.of_field("messages")[1].value["messages"]
    assert message["from"] == CUSTOMER.lstrip("+")
    assert message["system"] == {
        "body": "User identity changed",
        "type": "customer_identity_changed",
    }
    identity = message["identity"]
    assert identity["acknowledged"] is True and identity["hash"]
    assert identity["created_timestamp"].isdigit()


# --- calls ----------------------------------------------------------------------------------


async def test_a_user_initiated_call_connects_and_terminates(api: Api, sink: Sink) -> None:
    await phone_less_ana(api)
    connect = await api.emit(field="calls", customer=ANA)
    terminate = await api.emit(field="calls", customer=ANA, event="terminate", duration=120)
    assert connect["call_id"] == terminate["call_id"] and connect["call_id"].startswith("wacid.")
    first, last = sink.of_field("calls")
    assert first.value["contacts"] == [
        {"profile": {"name": "Ana", "username": "ana"}, "user_id": ANA}
    ]
    [call] = first.value["calls"]
    assert call["from_user_id"] == ANA and "from" not in call and call["to"] == BUSINESS
    assert call["event"] == "connect" and call["direction"] == "USER_INITIATED"
    assert call["session"]["sdp_type"] == "offer" and call["session"]["sdp"].startswith("v=0")
    [ended] = last.value["calls"]
    assert ended["event"] == "terminate" and ended["status"] == "COMPLETED"
    assert ended["duration"] == 120
    assert int(ended["end_time"]) - int(ended["start_time"]) == 120


async def test_business_initiated_call_statuses(api: Api, sink: Sink) -> None:
    await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    for status in ("RINGING", "ACCEPTED"):
        await api.emit(
            field="calls",
            customer=CUSTOMER,
            event="status",
            direction="BUSINESS_INITIATED",
            status=status,
            biz_opaque_callback_data="call-7",
        )
    ringing, accepted = sink.of_field("calls")
    [item] = ringing.value["statuses"]
    assert item["type"] == "call" and item["status"] == "RINGING"
    assert item["recipient_id"] == CUSTOMER.lstrip("+") and item["recipient_user_id"].startswith(
        "AR."
    )
    assert item["biz_opaque_callback_data"] == "call-7"
    assert accepted.value["statuses"][0]["status"] == "ACCEPTED"
    # Business-initiated: the contact carries no profile name.
    assert "name" not in ringing.value["contacts"][0].get("profile", {})


async def test_call_permission_reply(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(enforce_window=True)
    answer = await api.emit(
        field="messages", type="call_permission_reply", customer=CUSTOMER, context_id="wamid.REQ"
    )
    [message] = only(sink, "messages").value["messages"]
    assert message["id"] == answer["wamid"]
    assert message["context"] == {"from": BUSINESS, "id": "wamid.REQ"}
    assert message["type"] == "interactive"
    interactive = message["interactive"]
    assert interactive["type"] == "call_permission_reply"
    reply = interactive["call_permission_reply"]
    assert reply["response"] == "accept" and reply["response_source"] == "user_action"
    assert isinstance(reply["expiration_timestamp"], int)
    # The customer wrote: the window is open.
    assert (await api.send(text_message()))[0] == 200
    await api.emit(
        field="messages", type="call_permission_reply", customer=CUSTOMER, response="reject"
    )
    rejected = sink.messages()[-1]["interactive"]["call_permission_reply"]
    assert rejected == {"response": "reject", "response_source": "user_action"}
