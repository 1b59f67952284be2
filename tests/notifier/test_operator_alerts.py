"""Meta's signals that need the operators, end to end: typed events on the real bus, digests in
PostgreSQL, the mail read back from moto's SES (``/moto-api/data.json``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from shared.bus import Bus
from shared.events import ErrorReported, Event
from shared.ops import REGISTRY_KEY
from shared.signals import (
    AccountUpdate,
    PhoneNumberQuality,
    TemplateCategoryUpdate,
    TemplateStatusUpdate,
)
from tests.fakes.notifier import FakeClock
from tests.helpers import wait_for
from tests.notifier.conftest import (
    Addresses,
    RunningNotifier,
    create_identities,
    moto_mails,
    wait_for_mails,
)

pytestmark = pytest.mark.integration

WABA = "200000000000001"
# Meta's shape of a disabled account (sandbox/README.md: ACCOUNT_DISABLED is DISABLED_UPDATE).
DISABLED = {"ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "November 25, 2026"}}


def sample(running: RunningNotifier, name: str, **labels: str) -> float:
    return running.app[REGISTRY_KEY].get_sample_value(name, labels) or 0.0


async def open_digests(database_url: str, schema: str) -> int:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval("SELECT count(*) FROM error_digests WHERE status = 'open'"))
    finally:
        await conn.close()


def paused(unique: str, **kw: Any) -> TemplateStatusUpdate:
    values: dict[str, Any] = {
        "waba_id": WABA,
        "template_id": "1234567890",
        "template_name": f"aviso_{unique}",
        "language": "es_AR",
        "event": "PAUSED",
        "reason": "NONE",
    }
    values.update(kw)
    return TemplateStatusUpdate(**values)


async def test_a_disabled_account_mails_the_operators_once(
    bus: Bus, start_notifier, make_settings, moto_url, addresses: Addresses, database_url, db_schema
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    clock = FakeClock()
    # One message at a time, in order: when the last mail is out, the ones before were handled.
    running = await start_notifier(make_settings(NOTIFIER_CONCURRENCY=1), clock=clock)
    disabled = AccountUpdate(waba_id=WABA, event="DISABLED_UPDATE", details=DISABLED)
    await bus.publish(disabled)
    await bus.publish(disabled)  # delivered twice (the bus is at-least-once)
    await bus.publish(paused(addresses.unique))

    mails = await wait_for_mails(moto_url, to=addresses.errors, count=2)
    [mail] = [m for m in mails if "cuenta" in m["subject"]]
    assert mail["source"] == addresses.error_sender
    assert mail["subject"] == f"[Mensajero] Meta deshabilitó la cuenta de WhatsApp Business {WABA}"
    body = mail["body"]
    for expected in (
        f"Meta deshabilitó la cuenta de WhatsApp Business {WABA}.",
        "deshabilitada",
        "November 25, 2026",
        "Qué significa para el negocio",
        "no sale ningún mensaje",
        "Qué hacer",
        "apelá la decisión",
    ):
        assert expected in body
    # The window ends: the repeat was not an occurrence, so no digest mail is recorded (it
    # would be, in the transaction that closes the window).
    clock.advance(61)
    await wait_for(lambda: _none_open(database_url, db_schema), message="digests closed")
    assert await _email_kinds(database_url, db_schema) == ["alert", "alert"]
    account = [
        m for m in await moto_mails(moto_url, to=addresses.errors) if "cuenta" in m["subject"]
    ]
    assert len(account) == 1
    assert sample(running, "notifier_operator_alerts_total", kind="account.disabled") == 1
    assert sample(running, "notifier_emails_sent_total", kind="alert") == 2
    assert sample(running, "notifier_emails_sent_total", kind="digest") == 0


async def _none_open(database_url: str, schema: str) -> bool:
    return await open_digests(database_url, schema) == 0


async def _email_kinds(database_url: str, schema: str) -> list[str]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        return [row["kind"] for row in await conn.fetch("SELECT kind FROM emails ORDER BY kind")]
    finally:
        await conn.close()


EXPIRATION = int(datetime(2026, 12, 2, 15, 30, tzinfo=UTC).timestamp())
SIGNALS: list[tuple[str, Event, str, tuple[str, ...]]] = [
    (
        "account restricted",
        AccountUpdate(
            waba_id=WABA,
            event="ACCOUNT_RESTRICTION",
            details={
                "restriction_info": [
                    {
                        "restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING",
                        "expiration": EXPIRATION,
                    }
                ]
            },
        ),
        f"[Mensajero] Meta restringió la cuenta de WhatsApp Business {WABA}",
        ("iniciar conversaciones con clientes", "hasta el 02/12/2026 12:30:00 -03", "Qué hacer"),
    ),
    (
        "account in violation",
        AccountUpdate(
            waba_id=WABA,
            event="ACCOUNT_VIOLATION",
            details={"violation_info": {"violation_type": "SCAM"}},
        ),
        f"[Mensajero] Meta registró una infracción en la cuenta de WhatsApp Business {WABA}",
        ("infringió sus políticas (SCAM)", "Las infracciones se acumulan"),
    ),
    (
        "account offboarded",
        AccountUpdate(waba_id=WABA, event="ACCOUNT_OFFBOARDED"),
        f"[Mensajero] La cuenta de WhatsApp Business {WABA} se dio de baja",
        ("ACCOUNT_OFFBOARDED", "volvé a conectar la cuenta"),
    ),
    (
        "number limit dropped",
        PhoneNumberQuality(
            waba_id=WABA,
            display_phone_number="15550000001",
            event="DOWNGRADE",
            old_limit="TIER_10K",
            current_limit="TIER_2K",
        ),
        "[Mensajero] Meta bajó el límite de mensajes del número 15550000001",
        ("de 10.000 clientes por día a 2.000 clientes por día", "menos clientes por día"),
    ),
    (
        "number quality flagged",
        PhoneNumberQuality(waba_id=WABA, display_phone_number="15550000001", event="FLAGGED"),
        "[Mensajero] Meta marcó como baja la calidad del número 15550000001",
        ("bloquearon o lo denunciaron", "bajá la frecuencia del marketing"),
    ),
    (
        "template paused",
        paused("x"),
        "[Mensajero] Meta pausó la plantilla aviso_x (es_AR)",
        ("La primera pausa dura 3 horas", "Frená las campañas"),
    ),
    (
        "template disabled",
        paused("x", event="DISABLED"),
        "[Mensajero] Meta deshabilitó la plantilla aviso_x (es_AR)",
        ("ya no se puede enviar", "Creá una plantilla nueva"),
    ),
    (
        "template rejected",
        paused(
            "x",
            event="REJECTED",
            reason="INVALID_FORMAT",
            raw={"rejection_info": {"reason": "INVALID_FORMAT", "recommendation": "Revisá {{1}}"}},
        ),
        "[Mensajero] Meta rechazó la plantilla aviso_x (es_AR)",
        ("formato inválido", "Revisá {{1}}", "mandala a revisión otra vez"),
    ),
    (
        "template made marketing",
        TemplateCategoryUpdate(
            waba_id=WABA,
            template_name="aviso_x",
            language="es_AR",
            previous_category="UTILITY",
            new_category="MARKETING",
        ),
        "[Mensajero] Meta pasó la plantilla aviso_x (es_AR) a marketing",
        ("de utilidad a marketing", "se cobra como marketing", "pedí una revisión de la categoría"),
    ),
]


@pytest.mark.parametrize(
    ("signal", "subject", "expected"),
    [(s, subject, expected) for _name, s, subject, expected in SIGNALS],
    ids=[name for name, *_ in SIGNALS],
)
async def test_each_signal_that_needs_attention_mails_the_operators(
    bus: Bus,
    start_notifier,
    make_settings,
    moto_url,
    addresses: Addresses,
    signal: Event,
    subject: str,
    expected: tuple[str, ...],
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    running = await start_notifier(make_settings())
    await bus.publish(signal)
    [mail] = await wait_for_mails(moto_url, to=addresses.errors)
    assert mail["subject"] == subject
    for text in expected:
        assert text in mail["body"]
    await wait_for(lambda: sample(running, "notifier_emails_sent_total", kind="alert") == 1)


async def test_signals_that_need_no_attention_send_nothing(
    bus: Bus, start_notifier, make_settings, moto_url, addresses: Addresses, database_url, db_schema
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    running = await start_notifier(make_settings(NOTIFIER_CONCURRENCY=1))
    quiet: list[Event] = [
        AccountUpdate(waba_id=WABA, event="ACCOUNT_RECONNECTED"),
        AccountUpdate(
            waba_id=WABA,
            event="DISABLED_UPDATE",
            details={"ban_info": {"waba_ban_state": "REINSTATE"}},
        ),
        AccountUpdate(waba_id=WABA, event="PARTNER_ADDED"),
        PhoneNumberQuality(event="THROUGHPUT_UPGRADE", current_limit="TIER_UNLIMITED"),
        PhoneNumberQuality(event="UPGRADE", old_limit="TIER_2K", current_limit="TIER_10K"),
        paused(addresses.unique, event="APPROVED"),
        paused(addresses.unique, event="FLAGGED"),
        TemplateCategoryUpdate(previous_category="MARKETING", new_category="UTILITY"),
    ]
    for event in quiet:
        await bus.publish(event)
    # Handled in order after them: when its mail is out, the quiet ones were handled.
    await bus.publish(ErrorReported(service="sender", error_type="Last", message="the last one"))
    [mail] = await wait_for_mails(moto_url, to=addresses.errors)
    assert mail["subject"] == "[Mensajero] Error en sender: Last"
    assert sample(running, "notifier_emails_sent_total", kind="alert") == 0
    conn = await asyncpg.connect(database_url, server_settings={"search_path": db_schema})
    try:
        assert await conn.fetchval("SELECT count(*) FROM error_digests") == 1  # the error's
        assert await conn.fetchval("SELECT count(*) FROM emails") == 1
    finally:
        await conn.close()


async def test_repeated_alerts_fold_into_a_digest_under_the_same_cap(
    bus: Bus, start_notifier, make_settings, moto_url, addresses: Addresses
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    clock = FakeClock()
    running = await start_notifier(
        make_settings(NOTIFIER_CONCURRENCY=1, ERROR_MAILS_PER_MINUTE=1), clock=clock
    )
    # An error takes the minute's only mail; Meta pauses the same template twice.
    await bus.publish(ErrorReported(service="sender", error_type="First", message="m"))
    await bus.publish(paused(addresses.unique))
    await bus.publish(paused(addresses.unique))  # another event, the same alert
    await wait_for(
        lambda: sample(running, "notifier_operator_alerts_total", kind="template.paused") == 2,
        message="both alerts counted",
    )
    [first] = await wait_for_mails(moto_url, to=addresses.errors)
    assert first["subject"] == "[Mensajero] Error en sender: First"

    clock.advance(61)  # the windows end, a new minute: the digests go out
    mails = await wait_for_mails(moto_url, to=addresses.errors, count=2)
    assert len(mails) == 2
    digest = mails[1]
    assert digest["subject"] == (
        f"[Mensajero] Resumen: Meta pausó la plantilla aviso_{addresses.unique} (es_AR) (2 veces)"
    )
    assert "El mismo aviso de Meta llegó 2 veces" in digest["body"]
    assert "Frená las campañas que usan esta plantilla" in digest["body"]
    await wait_for(lambda: sample(running, "notifier_emails_sent_total", kind="digest") == 1)
    assert sample(running, "notifier_emails_sent_total", kind="alert") == 0
