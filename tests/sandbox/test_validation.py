"""`validate_request` on its own: what it returns for valid bodies."""

from __future__ import annotations

import pytest

from sandbox.errors import GraphError
from sandbox.templates import load_templates
from sandbox.validation import ReadReceipt, SendRequest, validate_request

TEMPLATES = load_templates(None)


def test_type_defaults_to_text_and_to_is_normalised() -> None:
    body = {"messaging_product": "whatsapp", "to": "5491135722871", "text": {"body": "Hola"}}
    result = validate_request(body, TEMPLATES)
    assert isinstance(result, SendRequest)
    assert (result.type, result.to, result.input) == ("text", "+5491135722871", "5491135722871")


def test_template_use_keeps_params_and_payloads() -> None:
    body = {
        "messaging_product": "whatsapp",
        "to": "+5491135722871",
        "type": "template",
        "context": {"message_id": "wamid.Q"},
        "biz_opaque_callback_data": "handoff:9",
        "template": {
            "name": "handoff_agent_alert",
            "language": {"code": "es_AR"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ana"},
                        {"type": "text", "text": "Hola"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": 0,
                    "parameters": [{"type": "payload", "payload": "take:9"}],
                },
            ],
        },
    }
    result = validate_request(body, TEMPLATES)
    assert isinstance(result, SendRequest)
    assert result.template is not None
    assert result.template.body_params == ("Ana", "Hola")
    assert result.template.payloads == {0: "take:9"}
    assert (result.context_id, result.biz_opaque_callback_data) == ("wamid.Q", "handoff:9")


def test_read_receipt() -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.Q"}
    assert validate_request(body, TEMPLATES) == ReadReceipt("wamid.Q", typing_indicator=False)


@pytest.mark.parametrize("body", [None, [], "text", {"to": "+5491135722871"}])
def test_not_a_message_is_100(body: object) -> None:
    with pytest.raises(GraphError) as raised:
        validate_request(body, TEMPLATES)
    assert raised.value.code == 100
    assert raised.value.http_status == 400


def test_limits_at_the_edge_are_accepted() -> None:
    body = {
        "messaging_product": "whatsapp",
        "to": "+5491135722871",
        "type": "interactive",
        "interactive": {
            "type": "list",
            "header": {"type": "text", "text": "h" * 60},
            "body": {"text": "b" * 4096},
            "footer": {"text": "f" * 60},
            "action": {
                "button": "m" * 20,
                "sections": [
                    {
                        "title": f"S{s}",
                        "rows": [
                            {"id": f"{s}-{r}", "title": "t" * 24, "description": "d" * 72}
                            for r in range(5)
                        ],
                    }
                    for s in range(2)
                ],
            },
        },
    }
    assert isinstance(validate_request(body, TEMPLATES), SendRequest)
