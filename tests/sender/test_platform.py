"""Issue 12 through the sender's real path (RabbitMQ, PostgreSQL, the sandbox as Meta):
customers known by a business-scoped user id, templates Meta paused, marketing preferences,
Meta's codes by what they mean, and the account's signals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from sender.bootstrap import Adapters
from shared.events import (
    ErrorReported,
    Identity,
    MessageFailed,
    MessageSent,
    SendMessage,
)
from shared.ops import REGISTRY_KEY
from shared.signals import AccountUpdate, PreferenceChanged, TemplateCategoryUpdate
from tests.helpers import wait_for
from tests.sender.conftest import NUMBER, Stack, deps_of

pytestmark = pytest.mark.integration

PHONE = "+5491135722871"
WABA = "200000000000001"
PROMO = {
    "name": "promo_verano",
    "language": "es_AR",
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
}
CODE = {
    "name": "codigo_acceso",
    "language": "es_AR",
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "123456"}]}],
}
REENGAGE = {
    "name": "reengage_customer",
    "language": "es_AR",
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
}


@pytest.fixture
def sandbox_overrides(tmp_path: Path) -> dict[str, Any]:
    """The sandbox's templates: the built-in utility ones, a marketing and an authentication one."""
    templates = [
        {"name": "hello_world", "language": "en_US", "body": "Hello World"},
        {
            "name": "handoff_agent_alert",
            "language": "es_AR",
            "body": "Un cliente pide hablar con una persona: {{1}}. Último mensaje: {{2}}",
            "buttons": [{"type": "quick_reply", "text": "Atender"}],
        },
        {
            "name": "reengage_customer",
            "language": "es_AR",
            "body": "Hola {{1}}, ¿seguimos con tu consulta? Respondé este mensaje para continuar.",
        },
        {
            "name": "promo_verano",
            "language": "es_AR",
            "category": "MARKETING",
            "body": "¡Hola {{1}}! Tenemos ofertas de verano para vos.",
        },
        {
            "name": "codigo_acceso",
            "language": "es_AR",
            "category": "AUTHENTICATION",
            "body": "{{1}} es tu código de acceso.",
        },
    ]
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump({"templates": templates}, allow_unicode=True), "utf-8")
    return {"templates": str(path), "template_review_seconds": 0.2}


def cmd(content: dict[str, Any], to: str = PHONE, **kw: Any) -> SendMessage:
    return SendMessage.model_validate({"to": to, "content": content, **kw})


def template(spec: dict[str, Any], to: str = PHONE, **kw: Any) -> SendMessage:
    return cmd({"kind": "template", **spec}, to=to, **kw)


def failed_count(stack: Stack, app: web.Application, code: str, kind: str = "template") -> float:
    labels = {"phone_number_id": NUMBER, "kind": kind, "error_code": code}
    return stack.metric(app, "whatsapp_messages_failed_total", **labels)


async def knows_template(app: web.Application, name: str, **expected: str) -> None:
    def known() -> bool:
        state = deps_of(app).templates.get(name, "es_AR")
        return state is not None and all(getattr(state, k) == v for k, v in expected.items())

    await wait_for(known, message=f"the sender knows {name} {expected}")


async def marketing_stopped(app: web.Application, identifier: str) -> bool:
    pool = deps_of(app).store.pool
    return bool(await pool.fetchval("SELECT marketing_stopped($1)", identifier))


def preference(value: str, at: datetime, **who: str) -> PreferenceChanged:
    return PreferenceChanged(
        phone_number_id=NUMBER,
        customer=Identity(**who),
        category="marketing_messages",
        value=value,
        timestamp=at,
    )


# --------------------------------------------------------------------------- marketing


async def test_opted_out_customer_gets_no_marketing_template_until_they_resume(
    stack: Stack,
) -> None:
    assert stack.start_app is not None
    sender = await stack.start_app(META_WA_BUSINESS_ACCOUNT_ID=WABA)
    # The start-up check read Meta's list: the sender knows which templates are marketing.
    await knows_template(sender, "promo_verano", category="MARKETING", status="APPROVED")
    await stack.inbound(PHONE)
    # The customer stops marketing messages (Meta keeps it too: it would answer 131050).
    stop_at = datetime.now(UTC)
    await stack.emit(field="user_preferences", customer=PHONE, value="stop")
    await stack.bus.publish(preference("stop", stop_at, phone=PHONE, wa_id=PHONE[1:]))
    await wait_for(lambda: marketing_stopped(sender, PHONE), message="the stop recorded")

    refused = await stack.publish(template(PROMO))
    failed = await stack.failed(refused)
    assert failed.reason_code == "marketing_opted_out" and failed.error is None
    assert "stopped marketing" in failed.reason
    assert (await stack.accepted())["messages"] == []  # Meta was never asked
    assert failed_count(stack, sender, "marketing_opted_out") == 1
    utility = await stack.publish(template(REENGAGE))  # not marketing: it goes
    await stack.sent(utility)

    await stack.emit(field="user_preferences", customer=PHONE, value="resume")
    await stack.bus.publish(preference("resume", stop_at + timedelta(seconds=1), phone=PHONE))
    await wait_for(lambda: _not(marketing_stopped(sender, PHONE)), message="the resume recorded")
    again = await stack.publish(template(PROMO))
    sent = await stack.sent(again)
    received = await wait_for(lambda: stack.phone(PHONE), message="on the phone")
    assert sent.wamid in {m["wamid"] for m in received}


async def _not(value: Any) -> bool:
    return not await value


async def test_131050_is_learnt_and_the_next_marketing_template_is_refused_before_meta(
    stack: Stack,
) -> None:
    assert stack.start_app is not None
    sender = await stack.start_app(META_WA_BUSINESS_ACCOUNT_ID=WABA)
    await knows_template(sender, "promo_verano", category="MARKETING")
    await stack.inbound(PHONE)
    # Only Meta knows of the stop (its webhook never reached the sender).
    stack.lost_fields.add("user_preferences")
    await stack.emit(field="user_preferences", customer=PHONE, value="stop")
    first = await stack.failed(await stack.publish(template(PROMO)))
    assert first.error is not None and first.error.code == 131050
    assert first.reason_code == "marketing_opted_out"
    second = await stack.failed(await stack.publish(template(PROMO)))
    assert second.reason_code == "marketing_opted_out" and second.error is None
    assert failed_count(stack, sender, "131050") == 1
    assert failed_count(stack, sender, "marketing_opted_out") == 1


async def test_a_template_made_marketing_is_refused_to_an_opted_out_customer(
    stack: Stack,
) -> None:
    assert stack.start_app is not None
    sender = await stack.start_app(META_WA_BUSINESS_ACCOUNT_ID=WABA)
    await knows_template(sender, "reengage_customer", category="UTILITY")
    await stack.bus.publish(preference("stop", datetime.now(UTC), phone=PHONE))
    await stack.bus.publish(
        TemplateCategoryUpdate(
            template_name="reengage_customer",
            language="es_AR",
            previous_category="UTILITY",
            new_category="MARKETING",
        )
    )
    await knows_template(sender, "reengage_customer", category="MARKETING")
    failed = await stack.failed(await stack.publish(template(REENGAGE)))
    assert failed.reason_code == "marketing_opted_out"
    assert (await stack.accepted())["messages"] == []


# --------------------------------------------------------------------------- templates


async def test_a_paused_template_is_refused_before_meta(stack: Stack) -> None:
    assert stack.start_app is not None
    sender = await stack.start_app(SENDER_STATE_REFRESH_SECONDS=0.2)
    other = await stack.start_app(SENDER_STATE_REFRESH_SECONDS=0.2)  # a second replica
    await stack.inbound(PHONE)
    # Meta pauses it: the sandbox's webhook reaches the sender through the gateway's parser.
    await stack.emit(
        field="message_template_status_update",
        name="reengage_customer",
        language="es_AR",
        event="PAUSED",
    )
    for app in (sender, other):
        await knows_template(app, "reengage_customer", status="PAUSED")
    failed = await stack.failed(await stack.publish(template(REENGAGE)))
    assert failed.reason_code == "template_unusable" and failed.error is None
    assert "PAUSED" in failed.reason
    assert (await stack.accepted())["messages"] == []
    refused = failed_count(stack, sender, "template_unusable")
    refused += failed_count(stack, other, "template_unusable")
    assert refused == 1
    for app in (sender, other):  # database-wide: every replica reports the same
        await wait_for(_template_gauge(app, "PAUSED", 1.0), message="the gauge")
        assert _template_gauge(app, "APPROVED", 0.0)()


def _template_gauge(app: web.Application, status: str, value: float) -> Callable[[], bool]:
    labels = {"name": "reengage_customer", "language": "es_AR", "status": status}

    def check() -> bool:
        found = app[REGISTRY_KEY].get_sample_value("whatsapp_template_status", labels)
        return (found or 0.0) == value

    return check


# --------------------------------------------------------------------------- Meta's codes


@pytest.mark.parametrize("long_validity", [True, False])
async def test_131049_is_not_sent_again_before_24_hours(stack: Stack, long_validity: bool) -> None:
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    assert stack.start_app is not None
    sender = await stack.start_app(Adapters(clock=clock))
    await stack.inbound(PHONE)
    await stack.fault(recipient=PHONE, error_code=131049, count=1)
    valid: dict[str, Any] = {}
    if long_validity:
        valid["valid_until"] = datetime.now(UTC) + timedelta(days=3)
    command = await stack.publish(cmd({"kind": "text", "body": "otra vez"}, **valid))
    if not long_validity:  # the default validity (4 h) ends before: it fails now
        failed = await stack.failed(command)
        assert failed.error is not None and failed.error.code == 131049
        assert failed.reason_code == "temporary" and "after its validity ends" in failed.reason
        return
    labels = {"phone_number_id": NUMBER, "reason": "withheld"}
    await wait_for(
        lambda: stack.metric(sender, "whatsapp_send_retries_total", **labels) >= 3,
        message="the message held (it came back, and was held again)",
    )
    assert stack.of(MessageSent) == [] and stack.of(MessageFailed) == []
    assert await stack.phone(PHONE) == []
    offset[0] = timedelta(hours=24, minutes=1)  # a day later
    await stack.sent(command)
    assert len(await stack.phone(PHONE)) == 1


async def test_131062_goes_to_the_phone_when_the_command_knows_it(
    stack: Stack, sender: web.Application
) -> None:
    answer = await stack.write(**{"from": PHONE, "text": "hola"})
    user_id = answer["user_id"]
    # An authentication template cannot go to a BSUID: Meta answers 131062.
    with_phone = await stack.publish(template(CODE, to=user_id, to_phone=PHONE))
    sent = await stack.sent(with_phone)
    [received] = await wait_for(lambda: stack.phone(PHONE), message="on the phone")
    assert received["wamid"] == sent.wamid
    accepted = (await stack.accepted())["messages"]
    assert [m["to"] for m in accepted] == [PHONE]
    retries = {"phone_number_id": NUMBER, "reason": "bsuid_to_phone"}
    assert stack.metric(sender, "whatsapp_send_retries_total", **retries) == 1

    without = await stack.failed(await stack.publish(template(CODE, to=user_id)))
    assert without.reason_code == "recipient_unsupported"
    assert without.error is not None and without.error.code == 131062


async def test_every_kind_reaches_a_customer_known_only_by_user_id(
    stack: Stack, sender: web.Application
) -> None:
    user_id = "AR.13491208655302741918"
    answer = await stack.write(user_id=user_id, username="ana", text="hola")
    inbound = answer["wamid"]
    kinds: list[dict[str, Any]] = [
        {"kind": "text", "body": "hola Ana"},
        {"kind": "image", "link": "https://example.com/a.jpg", "caption": "foto"},
        {"kind": "document", "upload_url": f"{stack.relay_url}/files/pixel.png"},
        {"kind": "template", **REENGAGE},
        {"kind": "buttons", "body": "¿Seguimos?", "buttons": [{"id": "si", "title": "Sí"}]},
        {
            "kind": "list",
            "body": "Elegí",
            "button": "Opciones",
            "sections": [{"rows": [{"id": "a", "title": "A"}]}],
        },
        {"kind": "cta_url", "body": "Mirá", "display_text": "Abrir", "url": "https://e.com"},
        {"kind": "location", "latitude": -34.6, "longitude": -58.4},
        {"kind": "contacts", "contacts": [{"name": {"formatted_name": "Ana"}}]},
        {"kind": "reaction", "message_id": inbound, "emoji": "👍"},
    ]
    commands = [await stack.publish(cmd(content, to=user_id)) for content in kinds]
    sent = [await stack.sent(command) for command in commands]
    received = await wait_for(
        lambda: _all(stack.phone(user_id), len(kinds)), message="every kind on the phone"
    )
    assert {m["wamid"] for m in received} == {s.wamid for s in sent}
    assert {m["to"] for m in (await stack.accepted())["messages"]} == {user_id}
    receipt = cmd({"kind": "mark_read", "message_id": inbound}, to=user_id)
    await stack.publish(receipt)
    await wait_for(lambda: _receipts(stack), message="the read receipt")


async def _all(messages: Any, count: int) -> Any:
    found = await messages
    return found if len(found) == count else None


async def _receipts(stack: Stack) -> bool:
    return bool((await stack.accepted())["read_receipts"])


@pytest.mark.parametrize("code", [131042, 131044])
async def test_payment_problem_holds_the_numbers_messages_alerts_once_and_resumes(
    stack: Stack, sender: web.Application, code: int
) -> None:
    await stack.fault(error_code=code)  # every send of the number, until cleared
    phones = [f"+54911000001{i:02d}" for i in range(3)]
    for phone in phones:
        await stack.inbound(phone)
    commands = [await stack.publish(cmd({"kind": "text", "body": "hola"}, to=p)) for p in phones]
    gauge = {"phone_number_id": NUMBER, "circuit": "payment"}
    await wait_for(
        lambda: stack.metric(sender, "whatsapp_circuit_state", **gauge) >= 1, message="open"
    )
    retries = {"phone_number_id": NUMBER, "reason": str(code)}
    await wait_for(
        lambda: stack.metric(sender, "whatsapp_send_retries_total", **retries) >= 3,
        message="failed probes",
    )
    assert stack.of(MessageFailed) == [] and stack.of(MessageSent) == []
    [report] = await wait_for(lambda: stack.of(ErrorReported), message="the alert")
    assert report.meta_code == code and report.error_type == "meta_payment"
    await stack.clear_faults()
    for command in commands:
        await stack.sent(command, timeout=15)
    assert len(stack.of(ErrorReported)) == 1
    assert stack.metric(sender, "whatsapp_circuit_state", **gauge) == 0
    token = {"phone_number_id": NUMBER, "circuit": "token"}
    assert stack.metric(sender, "whatsapp_circuit_state", **token) == 0


# --------------------------------------------------------------------------- signals


async def test_pricing_is_counted_once_per_message(stack: Stack, sender: web.Application) -> None:
    await stack.inbound(PHONE)
    sent = await stack.sent(await stack.publish(cmd({"kind": "text", "body": "hola"})))
    labels = {"phone_number_id": NUMBER, "kind": "text"}
    await wait_for(
        lambda: stack.metric(sender, "whatsapp_messages_read_total", **labels) == 1,
        message="every status",
    )
    billed = {"phone_number_id": NUMBER, "category": "service"}
    assert sent.wamid
    count = stack.metric(
        sender, "whatsapp_messages_billable_total", **billed, pricing_type="free_customer_service"
    )
    assert count == 1  # sent, delivered and read each carried it


async def test_the_account_gauge_is_the_same_on_every_replica(stack: Stack) -> None:
    assert stack.start_app is not None
    apps = [await stack.start_app(SENDER_STATE_REFRESH_SECONDS=0.2) for _ in range(2)]
    restricted = AccountUpdate(
        waba_id=WABA,
        event="ACCOUNT_RESTRICTION",
        details={"restriction_info": [{"restriction_type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION"}]},
    )
    await stack.bus.publish(restricted)
    await _gauge_everywhere(stack, apps, lambda v: v == 1)
    reconnected = AccountUpdate(
        waba_id=WABA,
        event="ACCOUNT_RECONNECTED",
        occurred_at=restricted.occurred_at + timedelta(seconds=1),
    )
    await stack.bus.publish(reconnected)
    await _gauge_everywhere(stack, apps, lambda v: v == 0)


async def _gauge_everywhere(
    stack: Stack, apps: list[web.Application], wanted: Callable[[float], bool]
) -> None:
    for app in apps:

        def check(app: web.Application = app) -> bool:
            return wanted(stack.metric(app, "whatsapp_account_restricted"))

        await wait_for(check, message="whatsapp_account_restricted")
