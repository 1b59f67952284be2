"""The terminal chat: pure rendering and parsing, and one session against a real sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.__main__ import main
from sandbox.chat import (
    ChatSession,
    Choice,
    Identity,
    format_received,
    parse_emit,
    parse_line,
    render_message,
)
from tests.helpers import wait_for
from tests.sandbox.support import CUSTOMER, Api, Sink, load, text_message, to_bsuid

ANA = Identity(name="Ana", phone=CUSTOMER)
PHONE_LESS = Identity(name="Ana", user_id="AR.13491208655302741918", username="ana")


def record(body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "index": 0,
        "wamid": "wamid.B1",
        "type": body.get("type", "text"),
        "time": 1_750_000_000.0,
        "body": body,
        **extra,
    }


def test_text() -> None:
    rendered = render_message(record({"type": "text", "text": {"body": "Hola, ¿cómo estás?"}}))
    assert rendered.text == "Hola, ¿cómo estás?"
    assert rendered.choices == ()


def test_reply_context_is_shown() -> None:
    rendered = render_message(
        record({"type": "text", "text": {"body": "Sí"}}, context_id="wamid.Q")
    )
    assert rendered.text == "(reply to wamid.Q)\nSí"


def test_media() -> None:
    image = render_message(record({"type": "image", "image": {"link": "https://x.y/a.jpg",
                                                              "caption": "Foto"}}))  # fmt: skip
    assert image.text == "[image] Foto <https://x.y/a.jpg>"
    document = render_message(
        record({"type": "document", "document": {"id": "77", "filename": "factura.pdf"}})
    )
    assert document.text == "[document: factura.pdf] <media 77>"


def test_reply_buttons_are_numbered() -> None:
    rendered = render_message(record(load("send/send_reply_button.json")))
    assert rendered.text.splitlines() == [
        "<BUTTON_TEXT>",
        "  1) <BUTTON_TITLE_1>",
        "  2) <BUTTON_TITLE_2>",
    ]
    assert rendered.choices == (
        Choice(1, "button_reply", "<UNIQUE_BUTTON_ID_1>", "<BUTTON_TITLE_1>", "wamid.B1"),
        Choice(2, "button_reply", "<UNIQUE_BUTTON_ID_2>", "<BUTTON_TITLE_2>", "wamid.B1"),
    )


def test_list_rows_are_numbered_across_sections() -> None:
    rendered = render_message(record(load("send/send_list_message.json")))
    lines = rendered.text.splitlines()
    assert lines[:4] == ["*<HEADER_TEXT>*", "<BODY_TEXT>", "_<FOOTER_TEXT>_", "  [<BUTTON_TEXT>]"]
    assert "    3) <SECTION_2_ROW_1_TITLE> - <SECTION_2_ROW_1_DESC>" in lines
    assert [c.number for c in rendered.choices] == [1, 2, 3, 4]
    assert rendered.choices[2].id == "<LIST_SECTION_2_ROW_1_ID>"
    assert rendered.choices[2].kind == "list_reply"


def test_template_with_quick_reply() -> None:
    preview = {
        "name": "handoff_agent_alert",
        "language": "es_AR",
        "header": None,
        "body": "Un cliente pide hablar con una persona: Ana.",
        "footer": None,
        "buttons": [{"type": "quick_reply", "text": "Atender", "payload": "take:42"}],
    }
    body = {"type": "template", "template": {"name": "handoff_agent_alert"}}
    rendered = render_message(record(body, template=preview))
    assert rendered.text.splitlines() == [
        "[template handoff_agent_alert (es_AR)]",
        "Un cliente pide hablar con una persona: Ana.",
        "  1) Atender",
    ]
    assert rendered.choices == (Choice(1, "button", "take:42", "Atender", "wamid.B1"),)


def test_other_kinds() -> None:
    location = render_message(record(load("send/send_location_message.json")))
    assert location.text == (
        "[location] META HQ, 1 Hacker Way, Menlo Park, CA 94025 (37.758056, -122.425332)"
    )
    contacts = render_message(record(load("send/send_contact_message.json")))
    assert contacts.text.startswith("[contact] John Smith +1 (940) 555-1234")
    reaction = render_message(record(load("send/send_reply_with_reaction_message.json")))
    assert reaction.text == "[reaction 😀]"
    cta = {
        "type": "interactive",
        "interactive": {
            "type": "cta_url",
            "body": {"text": "Mirá la oferta"},
            "action": {
                "name": "cta_url",
                "parameters": {"display_text": "Abrir", "url": "https://example.com"},
            },
        },
    }
    assert render_message(record(cta)).text == "Mirá la oferta\n  [Abrir] https://example.com"


def test_parse_line() -> None:
    choices = (
        Choice(1, "button_reply", "yes", "Sí", "wamid.B1"),
        Choice(2, "list_reply", "row", "Fila", "wamid.B2", "desc"),
        Choice(3, "button", "take:42", "Atender", "wamid.B3"),
    )
    assert parse_line("  ", choices, ANA) is None
    assert parse_line("hola", choices, ANA) == {
        "from": CUSTOMER,
        "name": "Ana",
        "text": "hola",
    }
    assert parse_line("1", choices, ANA) == {
        "from": CUSTOMER,
        "name": "Ana",
        "context_id": "wamid.B1",
        "button_reply": {"id": "yes", "title": "Sí"},
    }
    picked = {line: parse_line(line, choices, ANA) or {} for line in "234"}
    assert picked["2"]["list_reply"] == {"id": "row", "title": "Fila", "description": "desc"}
    assert picked["3"]["button"] == {"payload": "take:42", "text": "Atender"}
    assert picked["3"]["context_id"] == "wamid.B3"
    # A number with no such choice is just text.
    assert picked["4"]["text"] == "4"


async def test_a_chat_session_against_the_sandbox(api: Api, sink: Sink) -> None:
    printed: list[str] = []
    chat = ChatSession(api.session, api.base, ANA, output=printed.append)

    await chat.say("Hola")
    [message] = sink.messages()
    assert message["text"] == {"body": "Hola"}

    menu = load("send/send_reply_button.json")
    menu["to"] = CUSTOMER
    _, sent = await api.send(menu)
    assert await chat.poll(wait=5) == 1
    assert "  2) <BUTTON_TITLE_2>" in printed[-1]

    await chat.say("2")
    await wait_for(lambda: len(sink.messages()) == 2, timeout=5)
    reply = sink.messages()[1]
    assert reply["interactive"] == {
        "type": "button_reply",
        "button_reply": {"id": "<UNIQUE_BUTTON_ID_2>", "title": "<BUTTON_TITLE_2>"},
    }
    assert reply["context"]["id"] == sent["messages"][0]["id"]


def test_a_phone_less_identity() -> None:
    assert parse_line("hola", (), PHONE_LESS) == {
        "user_id": "AR.13491208655302741918",
        "username": "ana",
        "name": "Ana",
        "text": "hola",
    }
    assert PHONE_LESS.address == "AR.13491208655302741918"
    assert "without a phone" in PHONE_LESS.describe()
    with pytest.raises(ValueError, match="phone or a business-scoped user id"):
        _ = Identity().address


def test_parse_emit() -> None:
    assert parse_emit('!emit user_preferences {"value": "resume"}', PHONE_LESS) == {
        "field": "user_preferences",
        "customer": "AR.13491208655302741918",
        "value": "resume",
    }
    assert parse_emit("!emit history", ANA) == {"field": "history", "customer": CUSTOMER}
    with pytest.raises(ValueError, match="usage"):
        parse_emit("!emit", ANA)
    with pytest.raises(ValueError):
        parse_emit("!emit calls [1]", ANA)


def test_echoes_are_shown_as_the_business_app() -> None:
    echo = record({"type": "text", "text": {"body": "Te escribo yo"}}, source="business_app")
    assert "business (WhatsApp Business app):" in format_received(echo, render_message(echo))


async def test_a_phone_less_chat_session(api: Api, sink: Sink) -> None:
    printed: list[str] = []
    chat = ChatSession(api.session, api.base, PHONE_LESS, output=printed.append)
    await chat.say("Hola")
    [message] = sink.messages()
    assert "from" not in message and message["from_user_id"] == PHONE_LESS.user_id
    assert sink.received[0].value["contacts"][0]["profile"]["username"] == "ana"
    await api.send(to_bsuid(text_message(body="¡Hola Ana!"), "AR.13491208655302741918"))
    assert await chat.poll(wait=5) == 1
    assert "¡Hola Ana!" in printed[-1]
    await chat.say('!emit user_preferences {"value": "stop"}')
    assert printed[-1] == "! sent user_preferences (the business answered 200)"
    [preferences] = sink.of_field("user_preferences")
    assert preferences.value["user_preferences"][0]["user_id"] == PHONE_LESS.user_id
    await chat.say('!emit nothing_here {"x": 1}')
    assert printed[-1].startswith("! the sandbox refused it: field must be one of")
    await chat.say("!emit calls {oops")
    assert printed[-1].startswith("! ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["chat"], "--as <phone> or --user-id"),
        (["chat", "--as", "nope"], "--as is not a phone number"),
        (["chat", "--user-id", "ana"], "--user-id is not a business-scoped user id"),
    ],
)
def test_chat_options_are_checked(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(argv)
