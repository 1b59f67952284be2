"""The 2026 platform across processes (issue 12): customers without a phone number, the
WhatsApp Business app on the same number, the account's signals and a customer's new number.

Real processes as `make run` starts them (gateway, sender, handoff, notifier), the sandbox as
Meta and moto as SES, real RabbitMQ and PostgreSQL. Every webhook comes from the sandbox, signed,
in Meta's shapes (`POST /_sandbox/inbound`, `POST /_sandbox/webhooks/emit`).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sandbox.webhooks import SIGNATURE_HEADER, sign
from shared.settings import SANDBOX_DEFAULTS
from tests.helpers import wait_for
from tests.system.harness import System
from tests.system.phones import Phone, text_of

pytestmark = pytest.mark.integration

AGENT = SANDBOX_DEFAULTS["AGENT_WHATSAPP_NUMBER"]
CUSTOMER = "+5491135722871"
# A customer who took a username and hides the phone: Meta names them by their BSUID alone.
HIDDEN = "AR.13491208655302741918"
# The bot is quiet this long after someone answers from the WhatsApp Business app: long enough
# for a message to be handled within it on a busy machine, short enough to wait out.
QUIET_SECONDS = 5
MENU = "Soy el asistente virtual"
# A phone number in a text (not the digits of a BSUID, which follow its country and a dot).
PHONE_NUMBER = re.compile(r"(?<![.\d])\+?\d{10,}")


@pytest.fixture
async def system(
    rabbitmq_url: str, database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[System]:
    running = System(unique, rabbitmq_url, database_url, tmp_path)
    # The company's people get each case's transcript by mail.
    profiles = tmp_path / "profiles.json"
    profiles.write_bytes(orjson.dumps({"profiles": [{"notification_emails": [team(unique)]}]}))
    running.extra_env.update(
        COMPANY_PROFILES_FILE=str(profiles),
        HANDOFF_ECHO_QUIET_SECONDS=str(QUIET_SECONDS),
        ERROR_LOG_EMAIL=operators(unique),
        # One message at a time, in order: once a later mail is out, the earlier ones are done.
        NOTIFIER_CONCURRENCY="1",
    )
    async with running:
        yield running


def operators(unique: str) -> str:
    return f"ops-{unique}@example.com"


def team(unique: str) -> str:
    return f"equipo-{unique}@example.com"


async def emit(system: System, field: str, **options: Any) -> dict[str, Any]:
    """A webhook of any field, from the sandbox; the gateway must take it."""
    answer: dict[str, Any] = await system.post_json(
        f"{system.url('sandbox')}/_sandbox/webhooks/emit", {"field": field, **options}
    )
    assert answer["gateway_status"] == 200, answer
    return answer


async def sends_to(system: System, recipient: str) -> list[dict[str, Any]]:
    """The Graph API requests the sandbox accepted for ``recipient`` (as the send named it)."""
    data = await system.get_json(f"{system.url('sandbox')}/_sandbox/messages")
    return [m for m in data["messages"] if m["to"] == recipient]


def phones_in(text: str) -> set[str]:
    """The phone numbers a text shows, other than the agent's."""
    return {"+" + found.lstrip("+") for found in PHONE_NUMBER.findall(text)} - {AGENT}


async def case_list(agent: Phone) -> str:
    """What an agent's ``/lista`` answers."""
    seen = len(await agent.inbox())
    await agent.write("/lista")
    return text_of(await agent.receives("Casos abiertos", after=seen))


async def the_one_mail(system: System, address: str) -> str:
    """The mail moto holds for ``address`` (waited for; exactly one), as text."""
    [mail] = await wait_for(
        lambda: system.mails_to(address), timeout=30, message=f"the mail to {address}"
    )
    return str(mail)


def bot_answers(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the bot sent among a customer's messages (the menu), not the business app's."""
    return [m for m in messages if m.get("source") != "business_app" and MENU in text_of(m)]


# ----------------------------------------------------------------------- a phone-less customer


async def test_customer_without_phone_talks_to_bot_and_agent(system: System, unique: str) -> None:
    customer = Phone(system, HIDDEN, "Ana", username="ana.compras")
    agent = Phone(system, AGENT, "Agente")

    await customer.write("Hola")
    menu = await customer.receives(MENU)
    assert menu["type"] == "interactive"

    await customer.write("quiero hablar con un humano")
    await customer.receives("le avisé a una persona")
    alert = await agent.receives("handoff_agent_alert")
    shown = text_of(alert)
    assert "@ana.compras" in shown, shown
    assert not phones_in(shown), f"a phone in the alert: {shown}"

    # The agent answers by quoting the alert: that claims the case and relays the answer.
    seen = len(await customer.inbox())
    await agent.write("Hola Ana, soy del equipo. ¿En qué te ayudo?", context_id=alert["wamid"])
    await customer.receives("soy del equipo", after=seen)
    await agent.receives("Tomaste el caso")
    [request] = [
        m["body"] for m in await sends_to(system, HIDDEN) if "soy del equipo" in str(m["body"])
    ]
    # Meta's `recipient` names a BSUID; `to` (a phone) is left out.
    assert request["recipient"] == HIDDEN and "to" not in request, request

    seen = len(await agent.inbox())
    await customer.write("Mi pedido no llegó")
    relayed = text_of(await agent.receives("Mi pedido no llegó", after=seen))
    assert "@ana.compras" in relayed, relayed

    # A colleague answers from the WhatsApp Business app: the agent of the case is told.
    seen = len(await agent.inbox())
    echo = await emit(
        system, "smb_message_echoes", customer=HIDDEN, text="Ana, ya te mandamos el código"
    )
    [change] = echo["payload"]["entry"][0]["changes"]
    quiet_until = int(change["value"]["message_echoes"][0]["timestamp"]) + QUIET_SECONDS
    told = text_of(await agent.receives("desde la app de WhatsApp Business", after=seen))
    assert "@ana.compras" in told and "ya te mandamos el código" in told, told

    listing = await case_list(agent)
    assert "@ana.compras" in listing and not phones_in(listing), listing

    seen = len(await customer.inbox())
    await agent.write("/fin")
    await customer.receives("terminó", after=seen)
    # Her one-tap rating, at her BSUID; then she is back with the bot.
    rating = await customer.receives("¿Cómo te atendimos?", after=seen)
    await customer.taps(rating, "😐 Regular")
    await customer.receives("¡Gracias por contarnos!", after=seen)
    # The app's echo quieted the bot for her: once that is over, writing again gets the menu.
    await wait_for(
        lambda: time.time() > quiet_until + 0.1,
        timeout=QUIET_SECONDS + 1,
        message="the end of the quiet period",
    )
    seen = len(await customer.inbox())
    await customer.write("Hola de nuevo")
    back = await customer.receives(MENU, after=seen)
    assert back["type"] == "interactive"
    metrics = await system.metrics("handoff")
    assert metrics['handoff_ended_total{reason="agent"}'] == 1.0
    assert metrics['handoff_relays_total{direction="to_customer"}'] == 1.0
    # The transcript mailed to the company names her by username, the app's echo included,
    # and carries her rating.
    transcript = await the_one_mail(system, team(unique))
    for expected in ("@ana.compras", "Mi pedido no llegó", "ya te mandamos el código", "2 de 3"):
        assert expected in transcript, transcript
    assert not phones_in(transcript), transcript


# ----------------------------------------------------------------------- coexistence


async def test_an_echo_from_the_business_app_quiets_the_bot(system: System) -> None:
    customer = Phone(system, CUSTOMER, "Juan Pérez")
    await customer.write("Hola")
    await customer.receives(MENU)

    echo = await emit(
        system, "smb_message_echoes", customer=CUSTOMER, text="Hola Juan, te escribo desde acá"
    )
    [change] = echo["payload"]["entry"][0]["changes"]
    quiet_until = int(change["value"]["message_echoes"][0]["timestamp"]) + QUIET_SECONDS
    await customer.receives("te escribo desde acá")

    seen = len(await customer.inbox())
    await customer.write("Hola, ¿sigue ahí?")
    await wait_for(
        lambda: "the bot is quiet for" in system.tail("handoff", 400),
        timeout=QUIET_SECONDS,
        message="handoff leaving the customer to the person at the app",
    )
    assert time.time() < quiet_until, "handled after the quiet period: the test proves nothing"

    # After the quiet period the bot answers again: the marker's menu is the only one since.
    await wait_for(
        lambda: time.time() > quiet_until + 0.1,
        timeout=QUIET_SECONDS + 1,
        message="the end of the quiet period",
    )
    await customer.write("Hola otra vez")
    await customer.receives(MENU, after=seen)
    assert len(bot_answers((await customer.inbox())[seen:])) == 1
    # Nothing the app sent is sent again by Mensajero.
    assert not [m for m in await sends_to(system, CUSTOMER) if "desde acá" in str(m["body"])]


# ----------------------------------------------------------------------- the account


async def test_a_disabled_account_mails_the_operators_once(system: System, unique: str) -> None:
    ban_date = f"November 25, 2026 ({unique})"
    update = await emit(
        system,
        "account_update",
        event="ACCOUNT_DISABLED",
        ban_info={"waba_ban_state": "DISABLE", "waba_ban_date": ban_date},
    )
    # Meta delivers a webhook again when it is unsure of the first delivery.
    assert await post_webhook(system, update["payload"]) == 200
    # A later signal the operators hear of: with one message at a time, once its mail is out,
    # both deliveries of the account's update were handled.
    await emit(
        system, "message_template_status_update", name="hello_world", language="en_US",
        event="PAUSED",
    )  # fmt: skip

    async def template_mail() -> list[dict[str, Any]]:
        return [m for m in await system.mails_to(operators(unique)) if "hello_world" in str(m)]

    await wait_for(template_mail, timeout=30, message="the paused template's mail")
    mails = [m for m in await system.mails_to(operators(unique)) if ban_date in str(m)]
    assert len(mails) == 1, mails
    [mail] = mails
    assert "deshabilitó la cuenta" in mail["subject"], mail["subject"]
    # Meta's second delivery was the same event, not a second occurrence for a digest.
    metrics = await system.metrics("notifier")
    assert metrics['notifier_operator_alerts_total{kind="account.disabled"}'] == 1.0
    assert metrics["notifier_error_occurrences_folded_total"] == 0.0


async def post_webhook(system: System, payload: dict[str, Any]) -> int:
    """POST a webhook to the gateway as Meta does, signed with the app's secret."""
    assert system.session is not None
    body = orjson.dumps(payload)
    headers = {
        SIGNATURE_HEADER: sign(body, SANDBOX_DEFAULTS["META_WA_APP_SECRET"]),
        "Content-Type": "application/json",
    }
    async with system.session.post(
        f"{system.url('gateway')}/webhook/whatsapp", data=body, headers=headers
    ) as response:
        return response.status


# ----------------------------------------------------------------------- a new number


@pytest.mark.parametrize(
    ("who", "change", "options"),
    [
        ((CUSTOMER, None), "user_changed_number", {"new_phone": "+5491144445555"}),
        ((HIDDEN, "ana.compras"), "user_changed_user_id", {}),
    ],
    ids=["new-number", "new-bsuid"],
)
async def test_an_identity_change_mid_case_keeps_the_case(
    system: System, who: tuple[str, str | None], change: str, options: dict[str, str]
) -> None:
    number, username = who
    customer = Phone(system, number, "Juan Pérez", username=username)
    agent = Phone(system, AGENT, "Agente")
    await customer.write("quiero hablar con un humano")
    alert = await agent.receives("handoff_agent_alert")
    await agent.write("Hola Juan, ¿qué pasó?", context_id=alert["wamid"])
    await customer.receives("¿qué pasó?")
    await agent.receives("Tomaste el caso")

    seen = len(await agent.inbox())
    changed = await emit(system, "messages", type=change, customer=number, **options)
    await agent.receives("La conversación sigue en este caso", after=seen)
    # Meta addresses the customer by the new identifiers from now on.
    new = str(changed["phone"] if change == "user_changed_number" else changed["user_id"])
    assert new != number

    moved = Phone(system, new, "Juan Pérez", username=username)
    seen_by_customer = len(await moved.inbox())
    await moved.write("Sigo acá con otro WhatsApp")
    await agent.receives("Sigo acá con otro WhatsApp", after=seen)
    await agent.write("Perfecto, seguimos por acá")
    await moved.receives("seguimos por acá", after=seen_by_customer)
    assert await sends_to(system, new), f"the answer went to {new}"
    # Still one customer with one case: no second alert, no menu for the new identifiers.
    alerts = [m for m in await agent.inbox() if "handoff_agent_alert" in text_of(m)]
    assert len(alerts) == 1
    assert not bot_answers((await moved.inbox())[seen_by_customer:])
    listing = await case_list(agent)
    assert listing.count("#") == 1, listing
