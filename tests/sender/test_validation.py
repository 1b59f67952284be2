"""Pure: every kind's Graph body (checked against Meta's official examples) and every rule."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sender.bodies import build_body
from sender.validation import Invalid, Prepared, prepare
from shared.events import SendMessage

EXAMPLES = Path(__file__).parent / "data" / "meta-send-examples"
TO = "+5491135722871"


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    if "to" in body:
        body["to"] = TO
        body.setdefault("recipient_type", "individual")
        body.setdefault("type", "text")
    return body


def command(content: dict[str, Any], **kw: Any) -> SendMessage:
    return SendMessage.model_validate({"to": kw.pop("to", TO), "content": content, **kw})


def body_of(content: dict[str, Any], **kw: Any) -> dict[str, Any]:
    cmd = command(content, **kw)
    to = "" if content["kind"] == "mark_read" else TO
    return build_body(cmd, to, media_id=kw.get("media_id"))


def reason(content: dict[str, Any], **kw: Any) -> str:
    result = prepare(command(content, **kw))
    assert isinstance(result, Invalid), result
    return result.reason


def valid(content: dict[str, Any], **kw: Any) -> Prepared:
    result = prepare(command(content, **kw))
    assert isinstance(result, Prepared), result
    return result


# --------------------------------------------------------------------------- Meta's bodies

TEMPLATE_BODY_PARAMS = [
    {"type": "text", "text": "text-string"},
    {
        "type": "currency",
        "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990},
    },
    {
        "type": "date_time",
        "date_time": {
            "fallback_value": "February 25, 1977",
            "day_of_week": 5,
            "year": 1977,
            "month": 2,
            "day_of_month": 25,
            "hour": 15,
            "minute": 33,
            "calendar": "GREGORIAN",
        },
    },
]

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("send_text_message", {"kind": "text", "body": "text-message-content"}, {}),
    (
        "send_text_message_with_preview_url",
        {
            "kind": "text",
            "body": "Please visit https://youtu.be/hpltvTEiRrY.",
            "preview_url": True,
        },
        {},
    ),
    ("send_image_message_by_id", {"kind": "image", "media_id": "<IMAGE_OBJECT_ID>"}, {}),
    ("send_image_message_by_url", {"kind": "image", "link": "http(s)://image-url"}, {}),
    (
        "send_video_message_by_id",
        {"kind": "video", "media_id": "<VIDEO_OBJECT_ID>", "caption": "<VIDEO_CAPTION_TEXT>"},
        {},
    ),
    (
        "send_video_message_by_url",
        {"kind": "video", "link": "<http(s)://video-url>", "caption": "<VIDEO_CAPTION_TEXT>"},
        {},
    ),
    ("send_audio_message_by_id", {"kind": "audio", "media_id": "<AUDIO_OBJECT_ID>"}, {}),
    ("send_audio_message_by_url", {"kind": "audio", "link": "<http(s)://audio-url>"}, {}),
    (
        "send_document_message_by_id",
        {
            "kind": "document",
            "media_id": "<DOCUMENT_OBJECT_ID>",
            "caption": "<DOCUMENT_CAPTION_TO_SEND>",
            "filename": "<DOCUMENT_FILENAME>",
        },
        {},
    ),
    (
        "send_document_message_by_url",
        {
            "kind": "document",
            "link": "<http(s)://document-url>",
            "caption": "<DOCUMENT-CAPTION-TEXT>",
        },
        {},
    ),
    ("send_sticker_message_by_id", {"kind": "sticker", "media_id": "<MEDIA_OBJECT_ID>"}, {}),
    ("send_sticker_message_by_url", {"kind": "sticker", "link": "<http(s)://sticker-url>"}, {}),
    (
        "send_message_template_text",
        {
            "kind": "template",
            "name": "template-name",
            "language": "language-and-locale-code",
            "components": [{"type": "body", "parameters": TEMPLATE_BODY_PARAMS}],
        },
        {},
    ),
    (
        "send_message_template_media",
        {
            "kind": "template",
            "name": "template-name",
            "language": "language-and-locale-code",
            "components": [
                {
                    "type": "header",
                    "parameters": [{"type": "image", "image": {"link": "http(s)://the-image-url"}}],
                },
                {"type": "body", "parameters": TEMPLATE_BODY_PARAMS},
            ],
        },
        {},
    ),
    (
        "send_message_template_interactive",
        {
            "kind": "template",
            "name": "template-name",
            "language": "language-and-locale-code",
            "components": [
                {
                    "type": "header",
                    "parameters": [{"type": "image", "image": {"link": "http(s)://the-image-url"}}],
                },
                {"type": "body", "parameters": TEMPLATE_BODY_PARAMS},
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": "aGlzIHRoaXMgaXMgY29v"}],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "1",
                    "parameters": [{"type": "payload", "payload": "9rwnB8RbYmPF5t2Mn09x4h"}],
                },
            ],
        },
        {},
    ),
    (
        "send_reply_button",
        {
            "kind": "buttons",
            "body": "<BUTTON_TEXT>",
            "buttons": [
                {"id": "<UNIQUE_BUTTON_ID_1>", "title": "<BUTTON_TITLE_1>"},
                {"id": "<UNIQUE_BUTTON_ID_2>", "title": "<BUTTON_TITLE_2>"},
            ],
        },
        {},
    ),
    (
        "send_list_message",
        {
            "kind": "list",
            "header": "<HEADER_TEXT>",
            "body": "<BODY_TEXT>",
            "footer": "<FOOTER_TEXT>",
            "button": "<BUTTON_TEXT>",
            "sections": [
                {
                    "title": f"<LIST_SECTION_{s}_TITLE>",
                    "rows": [
                        {
                            "id": f"<LIST_SECTION_{s}_ROW_{r}_ID>",
                            "title": f"<SECTION_{s}_ROW_{r}_TITLE>",
                            "description": f"<SECTION_{s}_ROW_{r}_DESC>",
                        }
                        for r in (1, 2)
                    ],
                }
                for s in (1, 2)
            ],
        },
        {},
    ),
    (
        "send_location_message",
        {
            "kind": "location",
            "latitude": 37.758056,
            "longitude": -122.425332,
            "name": "META HQ",
            "address": "1 Hacker Way, Menlo Park, CA 94025",
        },
        {},
    ),
    (
        "send_reply_with_reaction_message",
        {"kind": "reaction", "message_id": "wamid.HBgLM...", "emoji": "\U0001f600"},
        {},
    ),
    (
        "send_reply_to_text_message",
        {"kind": "text", "body": "<TEXT_MSG_CONTENT>"},
        {"reply_to": "<MSGID_OF_PREV_MSG>"},
    ),
    (
        "send_reply_to_image_message_by_id",
        {"kind": "image", "media_id": "<IMAGE_OBJECT_ID>"},
        {"reply_to": "<MSGID_OF_PREV_MSG>"},
    ),
    (
        "send_typing_indicator_and_read_receipt",
        {
            "kind": "mark_read",
            "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUYzMjEzNDM2RTZGQ0MzMDJBRgA=",
            "typing": True,
        },
        {"to": ""},
    ),
]


@pytest.mark.parametrize(("name", "content", "extra"), CASES, ids=[c[0] for c in CASES])
def test_body_is_exactly_metas_example(
    name: str, content: dict[str, Any], extra: dict[str, Any]
) -> None:
    assert body_of(content, **extra) == example(name)


def test_contacts_body_is_metas_example() -> None:
    meta = example("send_contact_message")
    assert body_of({"kind": "contacts", "contacts": meta["contacts"]}) == {
        **meta,
        "recipient_type": "individual",
    }


def test_cta_url_body() -> None:
    body = body_of(
        {
            "kind": "cta_url",
            "body": "Mirá el estado de tu pedido",
            "display_text": "Ver pedido",
            "url": "https://example.com/p/1",
            "header": {"type": "text", "text": "Pedido 1"},
            "footer": "Gracias",
        }
    )
    assert body["type"] == "interactive"
    assert body["interactive"] == {
        "type": "cta_url",
        "header": {"type": "text", "text": "Pedido 1"},
        "body": {"text": "Mirá el estado de tu pedido"},
        "footer": {"text": "Gracias"},
        "action": {
            "name": "cta_url",
            "parameters": {"display_text": "Ver pedido", "url": "https://example.com/p/1"},
        },
    }


def test_buttons_with_image_header_and_upload() -> None:
    content = {
        "kind": "buttons",
        "body": "¿Seguimos?",
        "buttons": [{"id": "si", "title": "Sí"}],
        "header": {
            "type": "image",
            "media": {"kind": "image", "upload_url": "https://example.com/a.png"},
        },
    }
    prepared = valid(content)
    assert prepared.upload is not None and prepared.upload.url == "https://example.com/a.png"
    assert prepared.body("m1")["interactive"]["header"] == {"type": "image", "image": {"id": "m1"}}


def test_upload_from_bytes_uses_the_uploaded_id() -> None:
    data = base64.b64encode(b"%PDF-1.4").decode()
    prepared = valid(
        {
            "kind": "document",
            "upload_base64": data,
            "mime_type": "application/pdf",
            "filename": "f.pdf",
            "caption": "factura",
        }
    )
    assert prepared.upload is not None and prepared.upload.data == b"%PDF-1.4"
    assert prepared.body("media-9")["document"] == {
        "id": "media-9",
        "caption": "factura",
        "filename": "f.pdf",
    }


def test_copy_from_media_id_is_an_upload_sent_by_the_new_id() -> None:
    prepared = valid(
        {
            "kind": "document",
            "copy_from_media_id": " 1234567890 ",
            "filename": "f.pdf",
            "caption": "factura",
        }
    )
    upload = prepared.upload
    assert upload is not None and upload.copy_from == "1234567890"
    assert upload.url is None and upload.data is None and upload.filename == "f.pdf"
    assert prepared.body("new-9")["document"] == {
        "id": "new-9",
        "caption": "factura",
        "filename": "f.pdf",
    }


def test_copy_in_a_buttons_header() -> None:
    content = {
        "kind": "buttons",
        "body": "¿Es esta?",
        "buttons": [{"id": "si", "title": "Sí"}],
        "header": {"type": "image", "media": {"kind": "image", "copy_from_media_id": "77"}},
    }
    prepared = valid(content)
    assert prepared.upload is not None and prepared.upload.copy_from == "77"
    assert prepared.body("m2")["interactive"]["header"] == {"type": "image", "image": {"id": "m2"}}


def test_fallback_template_replaces_content_and_drops_context() -> None:
    cmd = command(
        {"kind": "text", "body": "hola"},
        reply_to="wamid.X",
        fallback_template={"name": "hello_world", "language": "en_US"},
    )
    assert cmd.fallback_template is not None
    body = build_body(cmd, TO, template=cmd.fallback_template)
    assert body["template"] == {"name": "hello_world", "language": {"code": "en_US"}}
    assert "context" not in body


def test_biz_opaque_callback_data_is_passed() -> None:
    body = body_of({"kind": "text", "body": "x"}, biz_opaque_callback_data="ref-1")
    assert body["biz_opaque_callback_data"] == "ref-1"


@pytest.mark.parametrize(
    "raw", ["+5491135722871", "5491135722871", "whatsapp:+5491135722871", "+54 9 11 3572-2871"]
)
def test_recipient_is_always_plus_e164(raw: str) -> None:
    prepared = valid({"kind": "text", "body": "x"}, to=raw)
    assert prepared.to == TO
    assert prepared.body()["to"] == TO


# --------------------------------------------------------------------------- rules

BTN = {"id": "a", "title": "A"}
ROW = {"id": "r", "title": "R"}

RULES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("bad phone", {"kind": "text", "body": "x"}, {"to": "hola"}, "not a phone number"),
    ("empty text", {"kind": "text", "body": " "}, {}, "text body is required"),
    ("long text", {"kind": "text", "body": "x" * 4097}, {}, "limit is 4096"),
    ("media no source", {"kind": "image"}, {}, "exactly one of"),
    (
        "media two sources",
        {"kind": "image", "media_id": "1", "link": "https://e.com/a.png"},
        {},
        "exactly one of",
    ),
    (
        "copy and media id",
        {"kind": "image", "media_id": "1", "copy_from_media_id": "2"},
        {},
        "exactly one of media_id, link, upload_url, upload_base64, copy_from_media_id",
    ),
    (
        "copy and upload",
        {"kind": "document", "copy_from_media_id": "2", "upload_url": "https://e.com/f.pdf"},
        {},
        "(got upload_url, copy_from_media_id)",
    ),
    (
        "copy and bytes",
        {
            "kind": "image",
            "copy_from_media_id": "2",
            "upload_base64": "aGk=",
            "mime_type": "image/png",
        },
        {},
        "exactly one of",
    ),
    ("copy blank", {"kind": "image", "copy_from_media_id": "  "}, {}, "must be a media id"),
    (
        "copy path",
        {"kind": "image", "copy_from_media_id": "123/../me"},
        {},
        "must be a media id",
    ),
    (
        "copy caption on audio",
        {"kind": "audio", "copy_from_media_id": "1", "caption": "c"},
        {},
        "caption",
    ),
    (
        "copy filename on image",
        {"kind": "image", "copy_from_media_id": "1", "filename": "a.jpg"},
        {},
        "filename",
    ),
    ("link scheme", {"kind": "image", "link": "ftp://e.com/a.png"}, {}, "http(s) URL"),
    ("upload scheme", {"kind": "image", "upload_url": "file:///etc/passwd"}, {}, "http(s) URL"),
    (
        "long caption",
        {"kind": "image", "media_id": "1", "caption": "c" * 1025},
        {},
        "limit is 1024",
    ),
    ("caption on audio", {"kind": "audio", "media_id": "1", "caption": "c"}, {}, "caption"),
    ("caption on sticker", {"kind": "sticker", "media_id": "1", "caption": "c"}, {}, "caption"),
    ("filename on image", {"kind": "image", "media_id": "1", "filename": "a"}, {}, "filename"),
    ("bytes without mime", {"kind": "image", "upload_base64": "aGk="}, {}, "needs mime_type"),
    (
        "bad base64",
        {"kind": "image", "upload_base64": "%%%", "mime_type": "image/png"},
        {},
        "not valid base64",
    ),
    ("no buttons", {"kind": "buttons", "body": "b", "buttons": []}, {}, "1 to 3 buttons"),
    (
        "four buttons",
        {
            "kind": "buttons",
            "body": "b",
            "buttons": [{"id": str(i), "title": str(i)} for i in range(4)],
        },
        {},
        "1 to 3 buttons",
    ),
    (
        "long button title",
        {"kind": "buttons", "body": "b", "buttons": [{"id": "a", "title": "t" * 21}]},
        {},
        "button 1 title is 21",
    ),
    (
        "long button id",
        {"kind": "buttons", "body": "b", "buttons": [{"id": "i" * 257, "title": "t"}]},
        {},
        "button 1 id is 257",
    ),
    (
        "duplicate button id",
        {"kind": "buttons", "body": "b", "buttons": [BTN, {"id": "a", "title": "B"}]},
        {},
        "button ids must be unique",
    ),
    (
        "duplicate button title",
        {"kind": "buttons", "body": "b", "buttons": [BTN, {"id": "b", "title": "a"}]},
        {},
        "button titles must be unique",
    ),
    (
        "long buttons body",
        {"kind": "buttons", "body": "b" * 1025, "buttons": [BTN]},
        {},
        "limit is 1024",
    ),
    (
        "long footer",
        {"kind": "buttons", "body": "b", "buttons": [BTN], "footer": "f" * 61},
        {},
        "limit is 60",
    ),
    (
        "long header",
        {
            "kind": "buttons",
            "body": "b",
            "buttons": [BTN],
            "header": {"type": "text", "text": "h" * 61},
        },
        {},
        "limit is 60",
    ),
    (
        "media header without media",
        {"kind": "buttons", "body": "b", "buttons": [BTN], "header": {"type": "image"}},
        {},
        "needs media",
    ),
    (
        "long list button",
        {"kind": "list", "body": "b", "button": "x" * 21, "sections": [{"rows": [ROW]}]},
        {},
        "list button is 21",
    ),
    (
        "eleven sections",
        {
            "kind": "list",
            "body": "b",
            "button": "x",
            "sections": [{"title": str(i), "rows": [ROW]} for i in range(11)],
        },
        {},
        "1 to 10 sections",
    ),
    (
        "eleven rows",
        {
            "kind": "list",
            "body": "b",
            "button": "x",
            "sections": [
                {"title": "a", "rows": [{"id": str(i), "title": "t"} for i in range(6)]},
                {"title": "b", "rows": [{"id": f"b{i}", "title": "t"} for i in range(5)]},
            ],
        },
        {},
        "1 to 10 rows in total",
    ),
    (
        "long row title",
        {
            "kind": "list",
            "body": "b",
            "button": "x",
            "sections": [{"rows": [{"id": "r", "title": "t" * 25}]}],
        },
        {},
        "title is 25",
    ),
    (
        "long row description",
        {
            "kind": "list",
            "body": "b",
            "button": "x",
            "sections": [{"rows": [{"id": "r", "title": "t", "description": "d" * 73}]}],
        },
        {},
        "description is 73",
    ),
    (
        "long row id",
        {
            "kind": "list",
            "body": "b",
            "button": "x",
            "sections": [{"rows": [{"id": "i" * 201, "title": "t"}]}],
        },
        {},
        "id is 201",
    ),
    (
        "duplicate row id",
        {"kind": "list", "body": "b", "button": "x", "sections": [{"rows": [ROW, ROW]}]},
        {},
        "row ids must be unique",
    ),
    (
        "untitled section among several",
        {
            "kind": "list",
            "body": "b",
            "button": "x",
            "sections": [{"title": "a", "rows": [ROW]}, {"rows": [{"id": "z", "title": "z"}]}],
        },
        {},
        "needs a title",
    ),
    (
        "long section title",
        {
            "kind": "list",
            "body": "b",
            "button": "x",
            "sections": [{"title": "s" * 25, "rows": [ROW]}],
        },
        {},
        "section 1 title is 25",
    ),
    (
        "long list body",
        {"kind": "list", "body": "b" * 4097, "button": "x", "sections": [{"rows": [ROW]}]},
        {},
        "limit is 4096",
    ),
    (
        "long cta display text",
        {"kind": "cta_url", "body": "b", "display_text": "d" * 21, "url": "https://e.com"},
        {},
        "display_text is 21",
    ),
    (
        "cta url scheme",
        {"kind": "cta_url", "body": "b", "display_text": "d", "url": "javascript:alert(1)"},
        {},
        "http(s) URL",
    ),
    ("latitude", {"kind": "location", "latitude": 91, "longitude": 0}, {}, "latitude"),
    ("longitude", {"kind": "location", "latitude": 0, "longitude": 181}, {}, "longitude"),
    ("no contacts", {"kind": "contacts", "contacts": []}, {}, "at least one contact"),
    (
        "contact without name",
        {"kind": "contacts", "contacts": [{"phones": []}]},
        {},
        "formatted_name",
    ),
    ("reaction without id", {"kind": "reaction", "message_id": "", "emoji": "x"}, {}, "message_id"),
    ("read without id", {"kind": "mark_read", "message_id": ""}, {"to": ""}, "message_id"),
    ("template without name", {"kind": "template", "name": ""}, {}, "template name is required"),
    (
        "template component type",
        {"kind": "template", "name": "t", "components": [{"type": "side"}]},
        {},
        "component 1 type",
    ),
    (
        "template button without sub_type",
        {"kind": "template", "name": "t", "components": [{"type": "button", "index": 0}]},
        {},
        "needs sub_type",
    ),
    (
        "template button without index",
        {"kind": "template", "name": "t", "components": [{"type": "button", "sub_type": "url"}]},
        {},
        "numeric index",
    ),
    (
        "template parameter type",
        {
            "kind": "template",
            "name": "t",
            "components": [{"type": "body", "parameters": [{"type": "emoji"}]}],
        },
        {},
        "unknown type",
    ),
    (
        "template parameter value",
        {
            "kind": "template",
            "name": "t",
            "components": [{"type": "body", "parameters": [{"type": "text"}]}],
        },
        {},
        "needs a 'text' value",
    ),
    (
        "template header text",
        {
            "kind": "template",
            "name": "t",
            "components": [{"type": "header", "parameters": [{"type": "text", "text": "h" * 61}]}],
        },
        {},
        "limit is 60",
    ),
    (
        "template media link",
        {
            "kind": "template",
            "name": "t",
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "ftp://x"}}]}
            ],
        },
        {},
        "http(s) URL",
    ),
    (
        "reply_to with a reaction",
        {"kind": "reaction", "message_id": "w", "emoji": "x"},
        {"reply_to": "w2"},
        "reply_to cannot",
    ),
    (
        "long opaque data",
        {"kind": "text", "body": "x"},
        {"biz_opaque_callback_data": "o" * 513},
        "limit is 512",
    ),
    (
        "bad fallback template",
        {"kind": "text", "body": "x"},
        {"fallback_template": {"name": ""}},
        "fallback_template name is required",
    ),
]


@pytest.mark.parametrize(("name", "content", "extra", "why"), RULES, ids=[r[0] for r in RULES])
def test_rule(name: str, content: dict[str, Any], extra: dict[str, Any], why: str) -> None:
    assert why in reason(content, **extra)


def test_expired_command_is_invalid_when_checked_with_now() -> None:
    now = datetime.now(UTC)
    cmd = command({"kind": "text", "body": "x"}, valid_until=now - timedelta(seconds=1))
    result = prepare(cmd, now=now)
    assert isinstance(result, Invalid) and "validity" in result.reason
