"""Phones: inbound webhooks in Meta's exact shape, and what each phone received."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import pytest

from sandbox.ids import business_scoped_user_id
from tests.helpers import wait_for
from tests.sandbox.support import (
    CUSTOMER,
    PHONE_ID,
    TOKEN,
    WABA_ID,
    Api,
    Sink,
    StartSandbox,
    load,
    text_message,
    valid_signature,
)

BUSINESS_DIGITS = "15550000001"


def shape(node: Any) -> Any:
    """The keys (recursively) and scalar types of a JSON document, without the values."""
    if isinstance(node, dict):
        return {key: shape(value) for key, value in node.items()}
    if isinstance(node, list):
        return [shape(node[0])] if node else []
    return "number" if isinstance(node, int | float) else type(node).__name__


def without_user_id(node: Any) -> Any:
    """Meta's examples predate business-scoped user ids (2026): `contacts[].user_id` and
    `messages[].from_user_id`, which the sandbox adds."""
    node = dict(node)
    for change in node["entry"][0]["changes"]:
        for contact in change["value"].get("contacts", []):
            contact.pop("user_id")
        for message in change["value"].get("messages", []):
            message.pop("from_user_id")
    return node


INBOUND_CASES = [
    ("text_message.json", {"text": "Does it come in another color?"}),
    (
        "interactive_button_reply_message.json",
        {"button_reply": {"id": "cancel-button", "title": "Cancel"}, "context_id": "wamid.Q"},
    ),
    (
        "interactive_list_reply_message.json",
        {
            "list_reply": {
                "id": "priority_express",
                "title": "Priority Mail Express",
                "description": "Next Day to 2 Days",
            },
            "context_id": "wamid.Q",
        },
    ),
    ("button_message.json", {"button": {"payload": "Unsubscribe", "text": "Unsubscribe"},
                             "context_id": "wamid.Q"}),
    ("image_message.json", {"image": {"caption": "Taj Mahal"}}),
    (
        "location_message.json",
        {
            "location": {
                "address": "101 Forest Ave, Palo Alto, CA 94301",
                "latitude": 37.44221496582,
                "longitude": -122.16165924072,
                "name": "Philz Coffee",
                "url": "https://philzcoffee.com/",
            }
        },
    ),
    ("reaction_message.json", {"reaction": {"message_id": "wamid.Q", "emoji": "👍"}}),
    (
        "contact_sharing_message.json",
        {
            "contacts": [
                {
                    "name": {"first_name": "Lucía", "last_name": "Gómez",
                             "formatted_name": "Lucía Gómez"},
                    "org": {"company": "Google"},
                    "phones": [{"phone": "+1 (983) 555-2319", "wa_id": "19835552319",
                                "type": "MOBILE"}],
                }
            ]
        },
    ),
]  # fmt: skip


@pytest.mark.parametrize(("example", "fields"), INBOUND_CASES, ids=[c[0] for c in INBOUND_CASES])
async def test_inbound_matches_metas_webhook_example(
    api: Api, sink: Sink, example: str, fields: dict[str, Any]
) -> None:
    status, answer = await api.inbound(
        **{"from": "+16505551234", "name": "Sheena Nelson"}, **fields
    )
    assert status == 200, answer
    assert answer["gateway_status"] == 200
    [received] = sink.received
    assert valid_signature(received.body, received.headers["X-Hub-Signature-256"])
    assert shape(without_user_id(received.json)) == shape(load(f"webhooks/{example}"))
    [message] = received.value["messages"]
    assert message["id"] == answer["wamid"]
    assert message["from"] == "16505551234"
    [contact] = received.value["contacts"]
    assert contact["wa_id"] == "16505551234"
    assert contact["user_id"] == answer["user_id"]
    assert received.value["metadata"] == {
        "display_phone_number": BUSINESS_DIGITS,
        "phone_number_id": PHONE_ID,
    }
    assert received.json["entry"][0]["id"] == WABA_ID


async def test_text_inbound_values(api: Api, sink: Sink) -> None:
    _, answer = await api.inbound(**{"from": CUSTOMER, "name": "Usuario", "text": "Hola"})
    [received] = sink.received
    [contact] = received.value["contacts"]
    assert contact == {
        "profile": {"name": "Usuario"},
        "wa_id": "5491135722871",
        "user_id": business_scoped_user_id(CUSTOMER, WABA_ID),
    }
    assert contact["user_id"].startswith("AR.")
    [message] = received.value["messages"]
    assert message["type"] == "text"
    assert message["text"] == {"body": "Hola"}
    assert message["timestamp"].isdigit()
    assert answer["user_id"] == contact["user_id"]


async def test_reply_to_a_business_message_quotes_it(api: Api, sink: Sink) -> None:
    _, sent = await api.send(text_message())
    wamid = sent["messages"][0]["id"]
    await api.inbound(**{"from": CUSTOMER, "text": "¿Cuál?", "context_id": wamid})
    [message] = sink.messages()
    assert message["context"] == {"from": BUSINESS_DIGITS, "id": wamid}


async def test_username_user_without_phone(api: Api, sink: Sink) -> None:
    await api.inbound(
        **{
            "from": CUSTOMER,
            "text": "Hola",
            "withhold_phone": True,
            "username": "@ana",
            "user_id": "AR.1234567890",
        }
    )
    [received] = sink.received
    [contact] = received.value["contacts"]
    assert contact == {
        "profile": {"name": "Usuario", "username": "@ana"},
        "user_id": "AR.1234567890",
    }
    [message] = received.value["messages"]
    assert "from" not in message


async def test_inbound_image_is_stored_and_downloadable(api: Api, sink: Sink) -> None:
    data = b"jpeg bytes from the phone"
    await api.inbound(
        **{
            "from": CUSTOMER,
            "image": {"caption": "Mi DNI", "mime_type": "image/jpeg",
                      "data_base64": base64.b64encode(data).decode()},
        }
    )  # fmt: skip
    [message] = sink.messages()
    image = message["image"]
    assert image["mime_type"] == "image/jpeg"
    assert image["sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    status, info = await api.request("GET", f"/v23.0/{image['id']}")
    assert status == 200
    async with api.session.get(
        info["url"], headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        assert await response.read() == data


async def test_any_other_message_kind_passes_through(api: Api, sink: Sink) -> None:
    raw = {"type": "order", "order": {"catalog_id": "1", "text": "", "product_items": []}}
    status, _ = await api.inbound(**{"from": CUSTOMER, "message": raw})
    assert status == 200
    [message] = sink.messages()
    assert message["type"] == "order"
    assert message["order"] == raw["order"]


@pytest.mark.parametrize(
    "fields",
    [
        {"from": CUSTOMER},
        {"from": CUSTOMER, "text": "a", "button_reply": {"id": "x", "title": "y"}},
        {"from": "not a phone", "text": "a"},
        {"from": CUSTOMER, "text": "a", "unknown_field": 1},
    ],
)
async def test_bad_inbound_is_400(api: Api, sink: Sink, fields: dict[str, Any]) -> None:
    status, body = await api.inbound(**fields)
    assert status == 400
    assert body["error"]
    assert sink.received == []


async def test_gateway_status_is_reported_and_a_failure_retried(api: Api, sink: Sink) -> None:
    sink.answers = [503]
    status, answer = await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    assert status == 200
    assert answer["gateway_status"] == 503
    await wait_for(lambda: len(sink.received) == 2, timeout=5, message="the retry")
    assert sink.received[0].body == sink.received[1].body


async def test_gateway_down_is_status_0(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(webhook_url="http://127.0.0.1:9/webhook", webhook_max_attempts=1)
    status, answer = await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    assert status == 200
    assert answer["gateway_status"] == 0
    assert answer["error"]


# --- what a phone received ------------------------------------------------------------------


@pytest.mark.parametrize("written", ["+5491135722871", "%2B5491135722871", "5491135722871"])
async def test_phone_inbox_in_order_with_after(api: Api, written: str) -> None:
    for text in ("uno", "dos", "tres"):
        await api.send(text_message(body=text))
    inbox = await api.inbox(written)
    assert [m["body"]["text"]["body"] for m in inbox] == ["uno", "dos", "tres"]
    assert [m["index"] for m in inbox] == [0, 1, 2]
    assert all(m["type"] == "text" and m["wamid"].startswith("wamid.") for m in inbox)
    assert all(isinstance(m["time"], float) for m in inbox)
    later = await api.inbox(written, after=0)
    assert [m["index"] for m in later] == [1, 2]
    assert await api.inbox(written, after=2) == []


async def test_long_poll_returns_as_soon_as_a_message_arrives(api: Api) -> None:
    poll = asyncio.create_task(api.inbox(CUSTOMER, after=-1, wait=10))
    # Nothing to return yet: the poll must still be waiting a moment later.
    done, _ = await asyncio.wait({poll}, timeout=0.2)
    assert not done
    await api.send(text_message(body="llegó"))
    inbox = await asyncio.wait_for(poll, timeout=5)
    assert [m["body"]["text"]["body"] for m in inbox] == ["llegó"]


async def test_long_poll_is_empty_at_the_deadline(api: Api) -> None:
    assert await api.inbox(CUSTOMER, after=-1, wait=0.05) == []


async def test_reset_clears_state(api: Api) -> None:
    await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    await api.send(text_message())
    await api.faults(error_code=131000)
    status, _ = await api.request("POST", "/_sandbox/reset", token=None)
    assert status == 200
    assert await api.inbox() == []
    assert (await api.get("/_sandbox/messages"))["messages"] == []
    assert (await api.get("/_sandbox/webhooks"))["webhooks"] == []
    assert (await api.get("/_sandbox/faults"))["number"]["error_code"] is None
    assert (await api.send(text_message()))[0] == 200
