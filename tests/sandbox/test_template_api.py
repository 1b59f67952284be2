"""`GET`/`POST /<version>/<WABA_ID>/message_templates`: paging, Meta's checks, the review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import wait_for
from tests.sandbox.support import (
    WABA_ID,
    Api,
    Sink,
    StartSandbox,
    assert_meta_error,
    template_message,
)

PATH = f"/v23.0/{WABA_ID}/message_templates"


def promo(name: str = "promo_otono", **changes: Any) -> dict[str, Any]:
    body = {
        "type": "BODY",
        "text": "Hola {{1}}, usá el código {{2}} y tenés 20% de descuento.",
        "example": {"body_text": [["Ana", "OTONO20"]]},
    }
    template: dict[str, Any] = {
        "name": name,
        "language": "es_AR",
        "category": "marketing",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Ofertas de {{1}}",
             "example": {"header_text": ["otoño"]}},
            body,
            {"type": "FOOTER", "text": "Respondé BAJA para no recibir más"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Quiero"}]},
        ],
    }  # fmt: skip
    template.update(changes)
    return template


async def create(api: Api, template: dict[str, Any]) -> tuple[int, Any]:
    return await api.request("POST", PATH, json=template)


async def list_templates(api: Api, **params: str) -> dict[str, Any]:
    status, body = await api.request("GET", PATH, params=params)
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def promo_send(*header: str) -> dict[str, Any]:
    message = template_message("promo_otono", "es_AR", "Ana", "OTONO20")
    if header:
        parameters = [{"type": "text", "text": h} for h in header]
        message["template"]["components"].insert(0, {"type": "header", "parameters": parameters})
    return message


# --- listing ----------------------------------------------------------------------------------


async def test_list_has_metas_default_fields(api: Api) -> None:
    body = await list_templates(api)
    names = [t["name"] for t in body["data"]]
    assert names == ["hello_world", "handoff_agent_alert", "reengage_customer"]
    hello = body["data"][0]
    assert set(hello) == {"name", "components", "language", "status", "category", "id"}
    assert hello["status"] == "APPROVED" and hello["category"] == "UTILITY"
    assert hello["id"].isdigit()
    assert hello["components"][0] == {"type": "HEADER", "format": "TEXT", "text": "Hello World"}
    assert {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"} in hello[
        "components"
    ]
    alert = body["data"][1]
    assert {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Atender"}]} in alert[
        "components"
    ]
    assert set(body["paging"]["cursors"]) == {"before", "after"}
    assert "next" not in body["paging"]


async def test_paging_follows_next_and_before(api: Api) -> None:
    first = await list_templates(api, limit="2")
    assert [t["name"] for t in first["data"]] == ["hello_world", "handoff_agent_alert"]
    async with api.session.get(
        first["paging"]["next"], headers={"Authorization": "Bearer test-token"}
    ) as r:
        second = await r.json()
    assert [t["name"] for t in second["data"]] == ["reengage_customer"]
    assert "next" not in second["paging"]
    back = await list_templates(api, limit="2", before=second["paging"]["cursors"]["before"])
    assert [t["name"] for t in back["data"]] == ["hello_world", "handoff_agent_alert"]


async def test_fields_and_filters(api: Api) -> None:
    body = await list_templates(api, fields="name,quality_score,rejected_reason", name="HANDOFF")
    [alert] = body["data"]
    assert set(alert) == {"name", "quality_score", "rejected_reason"}
    assert alert["name"] == "handoff_agent_alert" and alert["rejected_reason"] == "NONE"
    assert alert["quality_score"]["score"] == "GREEN"
    assert isinstance(alert["quality_score"]["date"], int)
    assert (await list_templates(api, status="PAUSED,REJECTED"))["data"] == []
    assert len((await list_templates(api, category="utility"))["data"]) == 3
    assert [t["name"] for t in (await list_templates(api, language="en_US"))["data"]] == [
        "hello_world"
    ]


@pytest.mark.parametrize(
    ("params", "detail"),
    [({"fields": "name,secret"}, "nonexisting field (secret)"), ({"limit": "0"}, "limit")],
)
async def test_bad_list_requests_are_100(api: Api, params: dict[str, str], detail: str) -> None:
    status, body = await api.request("GET", PATH, params=params)
    assert_meta_error(status, body, 100)
    assert detail in body["error"]["message"] + body["error"]["error_data"]["details"]


async def test_wrong_account_and_token(api: Api) -> None:
    status, body = await api.request("GET", "/v23.0/999/message_templates")
    assert_meta_error(status, body, 100)
    assert body["error"]["type"] == "GraphMethodException"
    status, body = await api.request("POST", PATH, token=None, json=promo())
    assert_meta_error(status, body, 190, http_status=401)


# --- creating and the review ------------------------------------------------------------------


async def test_a_created_template_is_approved_after_review(
    start_sandbox: StartSandbox, sink: Sink
) -> None:
    api = await start_sandbox(template_review_seconds=0.05)
    status, created = await create(api, promo())
    assert status == 200, created
    assert created["status"] == "PENDING" and created["category"] == "MARKETING"
    assert created["id"].isdigit()
    # Until the review, it is PENDING and cannot be sent.
    [pending] = (await list_templates(api, name="promo_otono"))["data"]
    assert pending["status"] == "PENDING"
    status, answer = await api.send(promo_send("otoño"))
    assert_meta_error(status, answer, 132001)
    await wait_for(
        lambda: sink.of_field("message_template_status_update"), timeout=5, message="the review"
    )
    [review] = sink.of_field("message_template_status_update")
    assert review.value["event"] == "APPROVED"
    assert review.value["message_template_id"] == int(created["id"])
    assert review.value["message_template_name"] == "promo_otono"
    assert review.value["message_template_category"] == "MARKETING"
    status, answer = await api.send(promo_send("otoño"))
    assert status == 200, answer
    # The header's variable is a parameter the send must fill.
    status, answer = await api.send(promo_send())
    assert_meta_error(status, answer, 132000)
    [listed] = (await list_templates(api, name="promo_otono", fields="components,quality_score"))[
        "data"
    ]
    assert listed["components"][1]["example"] == {"body_text": [["Ana", "OTONO20"]]}
    assert listed["quality_score"]["score"] == "UNKNOWN"


async def test_review_can_reject(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(template_review="reject", template_review_seconds=0.01,
                              template_rejection_reason="PROMOTIONAL")  # fmt: skip
    await create(api, promo())
    await wait_for(
        lambda: sink.of_field("message_template_status_update"), timeout=5, message="review"
    )
    [review] = sink.of_field("message_template_status_update")
    assert review.value["event"] == "REJECTED" and review.value["reason"] == "PROMOTIONAL"
    [listed] = (await list_templates(api, name="promo_otono", fields="status,rejected_reason"))[
        "data"
    ]
    assert listed == {"status": "REJECTED", "rejected_reason": "PROMOTIONAL"}


async def test_side_by_side_variables_are_rejected_as_invalid_format(
    start_sandbox: StartSandbox, sink: Sink
) -> None:
    api = await start_sandbox(template_review_seconds=0.01)
    body = {
        "type": "BODY",
        "text": "Hola {{1}}{{2}} amigos",
        "example": {"body_text": [["a", "b"]]},
    }
    status, created = await create(api, {**promo(), "components": [body]})
    assert status == 200 and created["status"] == "PENDING"
    await wait_for(
        lambda: sink.of_field("message_template_status_update"), timeout=5, message="review"
    )
    value = sink.of_field("message_template_status_update")[0].value
    assert value["event"] == "REJECTED" and value["reason"] == "INVALID_FORMAT"
    assert "{{1}}{{2}}" in value["rejection_info"]["reason"]


async def test_manual_review_waits_for_emit(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(template_review="manual", template_review_seconds=0)
    await create(api, promo())
    assert (await list_templates(api, name="promo_otono"))["data"][0]["status"] == "PENDING"
    await api.emit(field="message_template_status_update", name="promo_otono", language="es_AR",
                   event="REJECTED", reason="INCORRECT_CATEGORY")  # fmt: skip
    [review] = sink.of_field("message_template_status_update")
    assert review.value["reason"] == "INCORRECT_CATEGORY"
    assert (await list_templates(api, name="promo_otono"))["data"][0]["status"] == "REJECTED"


async def test_reset_forgets_created_templates(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(template_review_seconds=0.2)
    await create(api, promo())
    await api.request("POST", "/_sandbox/reset", token=None)
    assert [t["name"] for t in (await list_templates(api))["data"]] == [
        "hello_world", "handoff_agent_alert", "reengage_customer"
    ]  # fmt: skip
    # The pending review was cancelled with it: the name can be created again.
    status, _ = await create(api, promo())
    assert status == 200


def body(text: str, *examples: str) -> dict[str, Any]:
    """Components: a body with these sample values for its variables."""
    component: dict[str, Any] = {"type": "BODY", "text": text}
    if examples:
        component["example"] = {"body_text": [list(examples)]}
    return {"components": [component]}


def plus(*components: dict[str, Any]) -> dict[str, Any]:
    """Components: a plain body and these."""
    return {"components": [*body("Hola")["components"], *components]}


def header(**fields: Any) -> dict[str, Any]:
    return {"components": [{"type": "HEADER", **fields}, *body("Hola")["components"]]}


def buttons(*given: dict[str, Any]) -> dict[str, Any]:
    return plus({"type": "BUTTONS", "buttons": list(given)})


@pytest.mark.parametrize(
    ("changes", "subcode", "detail"),
    [
        ({"name": "Promo Otoño"}, None, "lowercase alphanumeric"),
        ({"category": "PROMO"}, None, "category"),
        ({"language": "spanish"}, None, "not a language code"),
        ({"components": []}, None, "BODY"),
        ({"components": [{"type": "FOOTER", "text": "x"}]}, None, "BODY"),
        ({"components": [{"type": "BANNER"}]}, None, "components[0]['type']"),
        (body("x" * 1025), 2388040, "limit is 1024"),
        (body("Hola {{1}}, ¿cómo estás?"), None, "example.body_text"),
        (body("Hola {{1}} y {{2}}, gracias", "a"), None, "sample"),
        (body("Hola {{2}} amigo", "a"), None, "in order"),
        (body("{{1}}, tu turno está listo", "a"), 2388299, "start or end"),
        (body("Tu código es {{1}}.", "a"), 2388299, "start or end"),
        (plus({"type": "FOOTER", "text": "Chau {{1}}"}), 2388073, "variables"),
        (header(format="TEXT", text="x" * 61), 2388040, "header"),
        (header(format="IMAGE"), None, "header_handle"),
        (buttons({"type": "BOGUS", "text": "a"}), None, "type"),
        (buttons({"type": "QUICK_REPLY", "text": "x" * 26}), 2388040, "button"),
    ],
)
async def test_creation_follows_metas_rules(
    api: Api, changes: dict[str, Any], subcode: int | None, detail: str
) -> None:
    status, body = await create(api, promo(**changes))
    details = assert_meta_error(status, body, 100)
    error = body["error"]
    assert error.get("error_subcode") == subcode
    assert detail in details + error["message"]
    if "error_user_msg" in error:
        assert error["error_user_title"] and error["is_transient"] is False


async def test_a_name_exists_once_per_language(api: Api) -> None:
    assert (await create(api, promo()))[0] == 200
    status, body = await create(api, promo())
    assert_meta_error(status, body, 100)
    assert body["error"]["error_subcode"] == 2388024
    assert (await create(api, promo(language="en_US")))[0] == 200
    status, body = await create(api, {**promo(name="hello_world"), "language": "en_US"})
    assert body["error"]["error_subcode"] == 2388024


async def test_an_authentication_template_needs_no_body_text(api: Api) -> None:
    template = {
        "name": "codigo_acceso",
        "language": "es_AR",
        "category": "AUTHENTICATION",
        "components": [
            {"type": "BODY", "add_security_recommendation": True},
            {"type": "FOOTER", "code_expiration_minutes": 10},
            {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE"}]},
        ],
    }
    status, created = await create(api, template)
    assert status == 200, created
    assert created["category"] == "AUTHENTICATION"


# --- the templates file -----------------------------------------------------------------------


async def test_the_file_gives_status_category_and_quality(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump({"templates": [
        {"name": "aviso", "language": "es_AR", "body": "Aviso {{1}} listo", "status": "PAUSED",
         "category": "MARKETING", "quality_score": "RED", "id": "123456789"},
        {"name": "viejo", "language": "es_AR", "body": "Hola"},
    ]}))  # fmt: skip
    api = await start_sandbox(templates=str(path))
    body = await list_templates(api, fields="name,status,category,quality_score,id")
    aviso, viejo = body["data"]
    assert aviso["status"] == "PAUSED" and aviso["category"] == "MARKETING"
    assert aviso["quality_score"]["score"] == "RED" and aviso["id"] == "123456789"
    # An entry without the new keys is as before: an approved utility template.
    assert viejo["status"] == "APPROVED" and viejo["category"] == "UTILITY"
    status, answer = await api.send(template_message("aviso", "es_AR", "x"))
    assert_meta_error(status, answer, 132015)
