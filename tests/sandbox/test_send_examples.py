"""Meta's own send examples (openapi-send-examples, copied into data/send) are accepted, and
mutated ones are rejected with Meta's code, HTTP status and a detail naming the field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.sandbox.support import CUSTOMER, DATA, StartSandbox, assert_meta_error, load

EXAMPLES = sorted(path.name for path in (DATA / "send").glob("*.json"))
TEMPLATES = str(DATA / "templates.yaml")
# Two examples share the name "template-name" with different headers; the test file has each.
RENAMED = {
    "send_message_template_media.json": "template_media",
    "send_message_template_interactive.json": "template_interactive",
    "send_flow_template_message.json": "flow_template",
}


def _fill_links(node: Any) -> None:
    """Meta writes links as `<http(s)://image-url>`; a caller sends a real URL."""
    if isinstance(node, dict):
        for key, value in node.items():
            placeholder = isinstance(value, str) and not value.startswith(("http://", "https://"))
            if key == "link" and placeholder:
                node[key] = "https://example.com/media/file"
            else:
                _fill_links(value)
    elif isinstance(node, list):
        for item in node:
            _fill_links(item)


def adapt(name: str, index: int = 0) -> dict[str, Any]:
    """An example with its placeholders filled the way a real caller fills them."""
    body: dict[str, Any] = copy.deepcopy(load(f"send/{name}"))
    if str(body.get("to", "")).startswith("{{"):
        # Half of them without the "+", as callers do.
        body["to"] = CUSTOMER if index % 2 else CUSTOMER.lstrip("+")
    _fill_links(body)
    if name in RENAMED:
        body["template"]["name"] = RENAMED[name]
    header = body.get("interactive", {}).get("header", {})
    if header.get("type") == "<HEADER_TYPE>":
        header["type"] = "text"
    if name == "send_reply_to_list_message.json":
        # Meta's example leaves out `type`, which then defaults to text (see the test below).
        body["type"] = "interactive"
    return body


def test_every_example_was_copied() -> None:
    assert len(EXAMPLES) == 50


@pytest.mark.parametrize("name", EXAMPLES)
async def test_meta_send_example_is_accepted(start_sandbox: StartSandbox, name: str) -> None:
    api = await start_sandbox(templates=TEMPLATES)
    body = adapt(name, EXAMPLES.index(name))
    status, answer = await api.send(body)
    assert status == 200, answer
    if body.get("status") == "read":
        assert answer == {"success": True}
        return
    expected_to = "+" + body["to"].lstrip("+")
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": body["to"], "wa_id": expected_to.lstrip("+")}]
    assert len(answer["messages"]) == 1
    assert answer["messages"][0]["id"].startswith("wamid.")
    recorded = (await api.get("/_sandbox/messages"))["messages"]
    assert [m["to"] for m in recorded] == [expected_to]
    assert recorded[0]["wamid"] == answer["messages"][0]["id"]
    assert recorded[0]["body"] == body


async def test_list_example_without_type_defaults_to_text_and_is_rejected(
    start_sandbox: StartSandbox,
) -> None:
    api = await start_sandbox(templates=TEMPLATES)
    body = adapt("send_reply_to_list_message.json")
    del body["type"]
    details = assert_meta_error(*await api.send(body), code=100)
    assert "text" in details


def _rows(count: int) -> list[dict[str, str]]:
    return [{"id": f"row-{i}", "title": f"Row {i}"} for i in range(count)]


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _four_buttons(body: dict[str, Any]) -> None:
    buttons = body["interactive"]["action"]["buttons"]
    buttons += [{"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}} for i in range(2)]


def _duplicate_button_ids(body: dict[str, Any]) -> None:
    buttons = body["interactive"]["action"]["buttons"]
    buttons[1]["reply"]["id"] = buttons[0]["reply"]["id"]


def _eleven_rows(body: dict[str, Any]) -> None:
    sections = body["interactive"]["action"]["sections"]
    sections[0]["rows"] = _rows(6)
    sections[1]["rows"] = [{"id": f"other-{i}", "title": f"Other {i}"} for i in range(5)]


def _eleven_sections(body: dict[str, Any]) -> None:
    body["interactive"]["action"]["sections"] = [
        {"title": f"S{i}", "rows": [{"id": f"r{i}", "title": f"R{i}"}]} for i in range(11)
    ]


def _untitled_section(body: dict[str, Any]) -> None:
    del body["interactive"]["action"]["sections"][1]["title"]


def _id_and_link(body: dict[str, Any]) -> None:
    body["image"]["id"] = "1234"


def _cta(display_text: str = "Open", url: str = "https://example.com") -> Callable[..., None]:
    def mutate(body: dict[str, Any]) -> None:
        body["interactive"] = {
            "type": "cta_url",
            "body": {"text": "See the offer"},
            "action": {"name": "cta_url", "parameters": {"display_text": display_text, "url": url}},
        }

    return mutate


BUTTON_0 = "interactive['action']['buttons'][0]['reply']"
ROW_0 = "interactive['action']['sections'][0]['rows'][0]"

MUTATIONS: list[tuple[str, str, Callable[[dict[str, Any]], None], int, str]] = [
    ("text_too_long", "send_text_message.json", _set(["text", "body"], "x" * 4097), 100,
     "text['body']"),
    ("text_body_missing", "send_text_message.json", _delete(["text", "body"]), 100,
     "text['body']"),
    ("to_missing", "send_text_message.json", _delete(["to"]), 100, "to"),
    ("to_not_a_phone", "send_text_message.json", _set(["to"], "not-a-phone"), 100, "to"),
    ("product_missing", "send_text_message.json", _delete(["messaging_product"]), 100,
     "messaging_product"),
    ("unknown_type", "send_text_message.json", _set(["type"], "carrier_pigeon"), 100, "type"),
    ("recipient_type", "send_text_message.json", _set(["recipient_type"], "group"), 100,
     "recipient_type"),
    ("context_without_id", "send_reply_to_text_message.json", _set(["context"], {}), 100,
     "context['message_id']"),
    ("four_buttons", "send_reply_button.json", _four_buttons, 131009,
     "interactive['action']['buttons']"),
    ("button_title_21", "send_reply_button.json",
     _set(["interactive", "action", "buttons", 0, "reply", "title"], "x" * 21), 131009,
     f"{BUTTON_0}['title']"),
    ("duplicate_button_ids", "send_reply_button.json", _duplicate_button_ids, 131009,
     "interactive['action']['buttons'][1]['reply']['id']"),
    ("button_body_missing", "send_reply_button.json", _delete(["interactive", "body"]), 100,
     "interactive['body']"),
    ("eleven_rows", "send_list_message.json", _eleven_rows, 131009,
     "interactive['action']['sections']"),
    ("eleven_sections", "send_list_message.json", _eleven_sections, 131009,
     "interactive['action']['sections']"),
    ("row_title_25", "send_list_message.json",
     _set(["interactive", "action", "sections", 0, "rows", 0, "title"], "x" * 25), 131009,
     f"{ROW_0}['title']"),
    ("row_description_73", "send_list_message.json",
     _set(["interactive", "action", "sections", 0, "rows", 0, "description"], "x" * 73), 131009,
     f"{ROW_0}['description']"),
    ("untitled_section", "send_list_message.json", _untitled_section, 131009,
     "interactive['action']['sections'][1]['title']"),
    ("header_61", "send_list_message.json", _set(["interactive", "header", "text"], "x" * 61),
     131009, "interactive['header']['text']"),
    ("footer_61", "send_list_message.json", _set(["interactive", "footer", "text"], "x" * 61),
     131009, "interactive['footer']['text']"),
    ("list_button_21", "send_list_message.json",
     _set(["interactive", "action", "button"], "x" * 21), 131009,
     "interactive['action']['button']"),
    ("unknown_interactive", "send_list_message.json", _set(["interactive", "type"], "carousel9"),
     100, "interactive['type']"),
    ("ftp_link", "send_image_message_by_url.json", _set(["image", "link"], "ftp://x.org/a.jpg"),
     131009, "image['link']"),
    ("id_and_link", "send_image_message_by_url.json", _id_and_link, 100, "image"),
    ("caption_1025", "send_document_message_by_url.json",
     _set(["document", "caption"], "x" * 1025), 100, "document['caption']"),
    ("video_missing", "send_video_message_by_id.json", _delete(["video"]), 100, "video"),
    ("latitude_missing", "send_location_message.json", _delete(["location", "latitude"]), 100,
     "location['latitude']"),
    ("reaction_without_message", "send_reply_with_reaction_message.json",
     _delete(["reaction", "message_id"]), 100, "reaction['message_id']"),
    ("no_contacts", "send_contact_message.json", _set(["contacts"], []), 100, "contacts"),
    ("cta_display_text_21", "send_text_message.json", _cta(display_text="x" * 21), 131009,
     "interactive['action']['parameters']['display_text']"),
    ("cta_javascript_url", "send_text_message.json", _cta(url="javascript:alert(1)"), 131009,
     "interactive['action']['parameters']['url']"),
    ("typing_audio", "send_typing_indicator_and_read_receipt.json",
     _set(["typing_indicator", "type"], "audio"), 100, "typing_indicator['type']"),
    ("unknown_template", "send_test_message.json", _set(["template", "name"], "hello_wrld"),
     132001, "hello_wrld"),
    ("template_language", "send_test_message.json", _set(["template", "language", "code"], "es"),
     132001, "es"),
    ("template_params", "send_message_template_text.json",
     lambda body: body["template"]["components"][0]["parameters"].pop(), 132000, "body"),
    ("template_header", "send_message_template_media.json",
     lambda body: body["template"]["components"].pop(0), 132000, "header"),
    ("template_button_index", "send_sample_issue_resolution_template.json",
     _set(["template", "components", 2, "index"], 5), 131009,
     "template['components'][2]['index']"),
]  # fmt: skip


def _cta_type(body: dict[str, Any]) -> None:
    if "interactive" in body and body.get("type") == "text":
        body["type"] = "interactive"
        del body["text"]


@pytest.mark.parametrize(
    ("example", "mutate", "code", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in MUTATIONS],
)
async def test_mutated_example_is_rejected(
    start_sandbox: StartSandbox,
    example: str,
    mutate: Callable[[dict[str, Any]], None],
    code: int,
    field: str,
) -> None:
    api = await start_sandbox(templates=TEMPLATES)
    body = adapt(example)
    mutate(body)
    _cta_type(body)
    details = assert_meta_error(*await api.send(body), code=code)
    assert field in details
    assert (await api.get("/_sandbox/messages"))["messages"] == []
