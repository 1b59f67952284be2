"""Graph API rules: tokens, numbers, the 24 h window, templates, limits, receipts, media."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from sandbox.app import create_app
from sandbox.keys import STATE_KEY
from tests.sandbox.support import (
    AGENT,
    CUSTOMER,
    PHONE_ID,
    TOKEN,
    Api,
    StartSandbox,
    assert_meta_error,
    make_config,
    text_message,
)
from tests.services import running


def template(
    name: str, language: str, *params: str, button_payload: str | None = None
) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    if params:
        components.append(
            {"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}
        )
    if button_payload is not None:
        components.append(
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": button_payload}],
            }
        )
    return {
        "messaging_product": "whatsapp",
        "to": CUSTOMER,
        "type": "template",
        "template": {"name": name, "language": {"code": language}, "components": components},
    }


# --- tokens and numbers ---------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_wrong_token_is_190_with_401(api: Api, token: str | None) -> None:
    status, body = await api.send(text_message(), token=token)
    assert_meta_error(status, body, code=190, http_status=401)
    assert body["error"]["type"] == "OAuthException"
    assert (await api.get("/_sandbox/messages"))["messages"] == []


async def test_token_in_query_parameter_is_accepted(api: Api) -> None:
    status, _ = await api.request(
        "POST",
        f"/v23.0/{PHONE_ID}/messages?access_token={TOKEN}",
        token=None,
        json=text_message(),
    )
    assert status == 200


@pytest.mark.parametrize("version", ["v23.0", "v18.0", "v21.0", "v99"])
async def test_any_version_segment_is_accepted(api: Api, version: str) -> None:
    status, body = await api.send(text_message(), version=version)
    assert status == 200, body


async def test_unknown_phone_number_id_is_graph_method_exception(api: Api) -> None:
    status, body = await api.send(text_message(), phone_id="999")
    details = assert_meta_error(status, body, code=100)
    assert body["error"]["type"] == "GraphMethodException"
    assert "Object with ID '999' does not exist" in body["error"]["message"]
    assert "999" in details


async def test_malformed_json_is_100(api: Api) -> None:
    status, body = await api.request(
        "POST",
        f"/v23.0/{PHONE_ID}/messages",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert_meta_error(status, body, code=100)


# --- success shape and recipients ------------------------------------------------------------


@pytest.mark.parametrize("to", ["+5491135722871", "5491135722871", "+54 9 11 3572-2871"])
async def test_recipient_is_normalised_to_e164(api: Api, to: str) -> None:
    status, body = await api.send(text_message(to=to))
    assert status == 200
    assert body["contacts"] == [{"input": to, "wa_id": "5491135722871"}]
    recorded = (await api.get("/_sandbox/messages"))["messages"]
    assert recorded[0]["to"] == CUSTOMER
    inbox = await api.inbox(CUSTOMER)
    assert [m["wamid"] for m in inbox] == [body["messages"][0]["id"]]


async def test_wamids_are_unique_and_look_like_metas(api: Api) -> None:
    ids = set()
    for _ in range(20):
        _, body = await api.send(text_message())
        ids.add(body["messages"][0]["id"])
    assert len(ids) == 20
    assert all(wamid.startswith("wamid.HBg") for wamid in ids)


async def test_error_fbtrace_ids_differ(api: Api) -> None:
    _, first = await api.send(text_message(), token="bad")
    _, second = await api.send(text_message(), token="bad")
    assert first["error"]["fbtrace_id"] != second["error"]["fbtrace_id"]


# --- the 24 h customer service window ------------------------------------------------------


async def test_free_form_to_a_silent_phone_is_131047(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(enforce_window=True)
    details = assert_meta_error(*await api.send(text_message()), code=131047)
    assert "24 hours" in details
    assert (await api.get("/_sandbox/messages"))["messages"] == []


async def test_template_is_allowed_outside_the_window(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(enforce_window=True)
    status, body = await api.send(template("reengage_customer", "es_AR", "Ana"))
    assert status == 200, body


async def test_writing_opens_the_window_for_that_phone_only(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(enforce_window=True)
    status, answer = await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    assert status == 200, answer
    assert (await api.send(text_message()))[0] == 200
    assert_meta_error(*await api.send(text_message(to=AGENT)), code=131047)
    # The agent's own number follows the same rule once it writes.
    await api.inbound(**{"from": AGENT, "text": "Estoy"})
    assert (await api.send(text_message(to=AGENT)))[0] == 200


async def test_window_closes_after_24_hours(sink: Any) -> None:
    app = create_app(make_config(webhook_url=sink.url, enforce_window=True))
    state = app[STATE_KEY]
    async with running(app) as base, aiohttp.ClientSession() as session:
        api = Api(session, base)
        await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
        assert (await api.send(text_message()))[0] == 200
        later = time.time() + 24 * 3600 + 1
        state.clock = lambda: later
        assert_meta_error(*await api.send(text_message()), code=131047)


async def test_window_enforcement_can_be_turned_off(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(enforce_window=False)
    assert (await api.send(text_message()))[0] == 200


# --- templates -----------------------------------------------------------------------------


async def test_builtin_templates(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(enforce_window=True)
    alert = template("handoff_agent_alert", "es_AR", "Ana", "Quiero un humano", button_payload="t1")
    for body in (
        template("hello_world", "en_US"),
        alert,
        template("reengage_customer", "es_AR", "Ana"),
    ):
        status, answer = await api.send(body)
        assert status == 200, answer
    inbox = await api.inbox()
    preview = inbox[1]["template"]
    assert (
        preview["body"]
        == "Un cliente pide hablar con una persona: Ana. Último mensaje: Quiero un humano"
    )
    assert preview["buttons"] == [{"type": "quick_reply", "text": "Atender", "payload": "t1"}]


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        (template("hello_world", "es_AR"), 132001,
         "template name (hello_world) does not exist in es_AR"),
        (template("no_such_template", "en_US"), 132001, "no_such_template"),
        (template("hello_world", "en_US", "extra"), 132000,
         "body: number of localizable_params (1)"),
        (template("handoff_agent_alert", "es_AR", "Ana"), 132000, "expected number of params (2)"),
        (template("reengage_customer", "es_AR"), 132000, "(0) does not match"),
    ],
)  # fmt: skip
async def test_template_errors(api: Api, body: dict[str, Any], code: int, detail: str) -> None:
    details = assert_meta_error(*await api.send(body), code=code)
    assert detail in details


async def test_template_error_messages_are_metas(api: Api) -> None:
    _, unknown = await api.send(template("nope", "en_US"))
    assert (
        unknown["error"]["message"] == "(#132001) Template name does not exist in the translation"
    )
    _, count = await api.send(template("reengage_customer", "es_AR"))
    assert count["error"]["message"] == (
        "(#132000) Number of parameters does not match the expected number of params"
    )


# --- throughput and pair limits ------------------------------------------------------------


async def test_over_the_number_rate_is_130429_as_http_400(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(rate_per_second=3)
    statuses = [(await api.send(text_message(to=f"+54911000000{i}")))[0] for i in range(3)]
    assert statuses == [200, 200, 200]
    status, body = await api.send(text_message(to="+5491100000009"))
    details = assert_meta_error(status, body, code=130429, http_status=400)
    assert body["error"]["message"] == "(#130429) Rate limit hit"
    assert "throughput" in details


async def test_same_recipient_too_fast_is_131056(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(pair_burst=2, pair_interval_seconds=60)
    assert (await api.send(text_message()))[0] == 200
    assert (await api.send(text_message()))[0] == 200
    status, body = await api.send(text_message())
    assert_meta_error(status, body, code=131056)
    assert body["error"]["message"] == (
        "(#131056) (Business Account, Consumer Account) pair rate limit hit"
    )
    # Another recipient still has its burst.
    assert (await api.send(text_message(to=AGENT)))[0] == 200


async def test_rejected_sends_do_not_use_the_pair_burst(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(pair_burst=1, pair_interval_seconds=60)
    bad = text_message()
    bad["text"]["body"] = ""
    assert_meta_error(*await api.send(bad), code=100)
    assert (await api.send(text_message()))[0] == 200


# --- mark as read ----------------------------------------------------------------------------


async def test_mark_as_read_with_typing_indicator(api: Api) -> None:
    _, answer = await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    body = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": answer["wamid"],
        "typing_indicator": {"type": "text"},
    }
    status, result = await api.send(body)
    assert (status, result) == (200, {"success": True})
    recorded = await api.get("/_sandbox/messages")
    assert recorded["messages"] == []
    [receipt] = recorded["read_receipts"]
    assert receipt["message_id"] == answer["wamid"]
    assert receipt["from"] == CUSTOMER
    assert receipt["typing_indicator"] is True


async def test_mark_as_read_needs_a_message_id(api: Api) -> None:
    body = {"messaging_product": "whatsapp", "status": "read"}
    details = assert_meta_error(*await api.send(body), code=100)
    assert "message_id" in details


# --- media ---------------------------------------------------------------------------------


async def upload(api: Api, data: bytes, mime: str, *, token: str | None = TOKEN) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("messaging_product", "whatsapp")
    form.add_field("type", mime)
    form.add_field("file", data, filename="file.bin", content_type=mime)
    return await api.request("POST", f"/v23.0/{PHONE_ID}/media", token=token, data=form)


async def test_media_upload_url_and_download(api: Api) -> None:
    data = b"\x89PNG fake image bytes"
    status, uploaded = await upload(api, data, "image/png")
    assert status == 200, uploaded
    assert set(uploaded) == {"id"} and uploaded["id"].isdigit()

    status, info = await api.request("GET", f"/v23.0/{uploaded['id']}")
    assert status == 200, info
    assert set(info) == {"url", "mime_type", "sha256", "file_size", "id", "messaging_product"}
    assert info["mime_type"] == "image/png"
    assert info["file_size"] == str(len(data))
    assert info["id"] == uploaded["id"]
    assert info["url"].startswith(api.base)

    async with api.session.get(
        info["url"], headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        assert response.status == 200
        assert response.content_type == "image/png"
        assert await response.read() == data
    async with api.session.get(info["url"]) as response:
        assert response.status == 401

    # The uploaded media can be sent by id.
    message = {
        "messaging_product": "whatsapp",
        "to": CUSTOMER,
        "type": "image",
        "image": {"id": uploaded["id"], "caption": "Foto"},
    }
    assert (await api.send(message))[0] == 200


async def test_media_url_lives_five_minutes(sink: Any) -> None:
    app = create_app(make_config(webhook_url=sink.url))
    state = app[STATE_KEY]
    async with running(app) as base, aiohttp.ClientSession() as session:
        api = Api(session, base)
        _, uploaded = await upload(api, b"%PDF-1.4", "application/pdf")
        _, info = await api.request("GET", f"/v23.0/{uploaded['id']}")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        later = time.time() + 301
        state.clock = lambda: later
        async with session.get(info["url"], headers=headers) as response:
            assert response.status == 404


async def test_media_upload_rules(api: Api) -> None:
    assert_meta_error(*await upload(api, b"x", "image/png", token=None), 190, 401)
    details = assert_meta_error(*await upload(api, b"x", "application/x-msdownload"), code=100)
    assert "file" in details
    too_big = b"x" * (500 * 1024 + 1)
    assert_meta_error(*await upload(api, too_big, "image/webp"), code=131053)
    form = aiohttp.FormData()
    form.add_field("messaging_product", "whatsapp")
    status, body = await api.request("POST", f"/v23.0/{PHONE_ID}/media", data=form)
    assert "file" in assert_meta_error(status, body, code=100)


async def test_unknown_media_id_and_delete(api: Api) -> None:
    status, body = await api.request("GET", "/v23.0/123456789")
    assert_meta_error(status, body, code=100)
    assert body["error"]["type"] == "GraphMethodException"
    _, uploaded = await upload(api, b"hello", "text/plain")
    status, body = await api.request("DELETE", f"/v23.0/{uploaded['id']}")
    assert (status, body) == (200, {"success": True})
    status, _ = await api.request("GET", f"/v23.0/{uploaded['id']}")
    assert status == 400
