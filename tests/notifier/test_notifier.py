"""The notifier end to end: events on the real bus, state in PostgreSQL, mail through moto's SES."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from notifier.handlers import TABLE
from notifier.repository import PgRepository
from shared.bus import Bus
from shared.events import (
    EmailBounced,
    EmailComplained,
    EmailDelivered,
    ErrorReported,
    HandoffClosed,
    HandoffUnattended,
    Identity,
    MetaError,
    TranscriptLine,
    WebhookErrors,
)
from shared.ops import REGISTRY_KEY
from tests.fakes.notifier import FakeClock
from tests.helpers import wait_for
from tests.notifier.conftest import (
    Addresses,
    RunningNotifier,
    ThrottlingProxy,
    create_identities,
    moto_mails,
    wait_for_mails,
)

pytestmark = pytest.mark.integration

CUSTOMER = Identity(phone="+5491155550000", wa_id="5491155550000", name="Ana Pérez")


def sample(running: RunningNotifier, name: str, **labels: str) -> float:
    value = running.app[REGISTRY_KEY].get_sample_value(name, labels)
    return value or 0.0


def log_fields(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    return [
        dict(getattr(record, "mensajero_fields", {}))
        for record in caplog.records
        if record.getMessage() == message
    ]


async def queue_depth(bus: Bus, name: str) -> int:
    channel = await bus.connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await channel.close()


async def fetchval(database_url: str, schema: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def gateway_error(**kw: Any) -> ErrorReported:
    values: dict[str, Any] = {
        "service": "sender",
        "error_type": "GraphError",
        "message": "(#131047) Re-engagement message",
        "meta_code": 131047,
        "phone_number_id": "100000000000001",
        "correlation_id": "corr-1",
        "details": {"to": "+5491155550000"},
    }
    values.update(kw)
    return ErrorReported(**values)


# --------------------------------------------------------------------------- each kind of mail


async def test_error_report_mail(
    bus,
    start_notifier,
    make_settings,
    moto_url,
    addresses: Addresses,
    caplog,
    database_url,
    db_schema,
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.notifier")
    await create_identities(moto_url, addresses.error_sender)
    running = await start_notifier(make_settings())
    await bus.publish(gateway_error())

    mails = await wait_for_mails(moto_url, to=addresses.errors)
    assert len(mails) == 1
    mail = mails[0]
    assert mail["source"] == addresses.error_sender
    assert mail["to"] == [addresses.errors]
    assert mail["subject"] == "[Mensajero] Error en sender: GraphError"
    body = mail["body"]  # moto keeps the HTML part
    for expected in (
        "Se produjo un error en el servicio sender.",
        "(#131047) Re-engagement message",
        "Código de Meta",
        "131047",
        "corr-1",
        "Cantidad de veces",
    ):
        assert expected in body

    await wait_for(lambda: sample(running, "notifier_emails_sent_total", kind="error") == 1)
    sent = log_fields(caplog, "email sent")
    assert len(sent) == 1
    line = sent[0]
    assert line["provider"] == "ses"
    assert line["message_id"] == mail["id"]
    assert line["from"] == addresses.error_sender
    assert line["to"] == addresses.errors
    assert line["subject"] == mail["subject"]
    assert line["status_code"] == 200
    assert line["request_id"]

    # SES's delivery event (through the gateway) is recorded against the message id.
    await bus.publish(EmailDelivered(addresses=[addresses.errors], ses_message_id=mail["id"]))

    async def delivered() -> bool:
        return bool(
            await fetchval(
                database_url,
                db_schema,
                "SELECT delivered_at IS NOT NULL FROM emails WHERE ses_message_id = $1",
                mail["id"],
            )
        )

    await wait_for(delivered, message="delivery recorded")


async def test_meta_webhook_errors_become_error_reports(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    await start_notifier(make_settings())
    await bus.publish(
        WebhookErrors(
            phone_number_id="100000000000001",
            errors=[MetaError(code=131000, title="Something went wrong", message="Try later")],
        )
    )
    mails = await wait_for_mails(moto_url, to=addresses.errors)
    assert mails[0]["subject"] == "[Mensajero] Error en whatsapp: WebhookError"
    assert "Something went wrong - Try later" in mails[0]["body"]
    assert "131000" in mails[0]["body"]


@pytest.mark.parametrize(
    ("reason", "subject", "intro"),
    [
        (
            "no_agent",
            "[Acme SRL] Un cliente pidió hablar con una persona y no había agentes disponibles"
            " (caso C-{n})",
            "no había ningún agente disponible",
        ),
        (
            "after_hours",
            "[Acme SRL] Un cliente pidió hablar con una persona fuera del horario de atención"
            " (caso C-{n})",
            "fuera del horario de atención",
        ),
        (
            "timeout",
            "[Acme SRL] Nadie atendió a un cliente que pidió hablar con una persona (caso C-{n})",
            "ningún agente respondió a tiempo",
        ),
    ],
)
async def test_handoff_unattended_mail(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses, reason, subject, intro
) -> None:
    await create_identities(moto_url, addresses.bot)
    await start_notifier(make_settings())
    await bus.publish(
        HandoffUnattended(
            case_code=f"C-{addresses.unique}",
            customer=CUSTOMER,
            reason=reason,
            profile_id="acme",
            last_messages=[
                TranscriptLine(at=datetime.now(UTC), author="customer", text="Quiero hablar <ya>")
            ],
        )
    )
    mails = await wait_for_mails(moto_url, to=addresses.ops)
    assert len(mails) == 1
    mail = mails[0]
    assert mail["source"] == addresses.bot
    assert mail["to"] == [addresses.ops, addresses.boss]
    assert mail["subject"] == subject.format(n=addresses.unique)
    assert intro in mail["body"]
    assert "Ana Pérez" in mail["body"]
    assert "+5491155550000" in mail["body"]
    assert "Quiero hablar &lt;ya&gt;" in mail["body"]  # escaped in the HTML body


async def test_transcript_mail(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses
) -> None:
    await create_identities(moto_url, addresses.bot)
    await start_notifier(make_settings())
    at = datetime(2026, 11, 25, 13, 5, tzinfo=UTC)
    await bus.publish(
        HandoffClosed(
            case_code="C-77",
            customer=CUSTOMER,
            agent_phone="+5491100000000",
            end_reason="agent",
            profile_id="acme",
            transcript=[
                TranscriptLine(at=at, author="customer", text="Hola, necesito ayuda"),
                TranscriptLine(at=at, author="agent", text="¡Hola Ana! Te ayudo"),
            ],
        )
    )
    mails = await wait_for_mails(moto_url, to=addresses.ops)
    mail = mails[0]
    assert mail["source"] == addresses.bot
    assert mail["to"] == [addresses.ops, addresses.boss]
    assert mail["subject"] == "[Acme SRL] Conversación del caso C-77 con Ana Pérez (+5491155550000)"
    # Times in the profile's zone (Buenos Aires, UTC-3).
    assert "[25/11 10:05] Cliente: Hola, necesito ayuda" in mail["body"]
    assert "[25/11 10:05] Agente: ¡Hola Ana! Te ayudo" in mail["body"]
    assert "la cerró el agente" in mail["body"]


async def test_reply_to_is_the_profiles_own_or_reply_to_email(
    bus,
    start_notifier,
    make_settings,
    moto_url,
    addresses: Addresses,
    throttling_proxy: ThrottlingProxy,
) -> None:
    await create_identities(moto_url, addresses.bot, addresses.error_sender)
    reply_to = f"soporte-{addresses.unique}@example.com"
    await start_notifier(
        make_settings(SES_ENDPOINT_URL=throttling_proxy.url, REPLY_TO_EMAIL=reply_to)
    )
    for profile_id in ("acme", "plain"):
        await bus.publish(
            HandoffUnattended(
                case_code=profile_id, customer=CUSTOMER, reason="no_agent", profile_id=profile_id
            )
        )
    await bus.publish(gateway_error())
    await wait_for(lambda: len(throttling_proxy.requests) == 3, message="three sends")
    by_sender_and_to = {
        (r["FromEmailAddress"], r["Destination"]["ToAddresses"][0]): r.get("ReplyToAddresses")
        for r in throttling_proxy.requests
    }
    assert by_sender_and_to == {
        (addresses.bot, addresses.ops): [addresses.reply_to],  # the profile's own
        (addresses.bot, addresses.boss): [reply_to],  # REPLY_TO_EMAIL
        (addresses.error_sender, addresses.errors): [reply_to],
    }


async def test_profile_without_recipients_is_skipped_and_counted(
    bus, start_notifier, make_settings, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.notifier")
    empty = tmp_path / "empty.yaml"
    empty.write_text("profiles:\n  - id: nobody\n    name: Nadie\n", "utf-8")
    running = await start_notifier(make_settings(COMPANY_PROFILES_FILE=str(empty)))
    await bus.publish(
        HandoffUnattended(
            case_code="C-0", customer=CUSTOMER, reason="no_agent", profile_id="nobody"
        )
    )
    await wait_for(
        lambda: (
            sample(
                running,
                "notifier_emails_skipped_total",
                kind="handoff_unattended",
                reason="no_recipients",
            )
            == 1
        )
    )
    assert log_fields(caplog, "profile has no notification_emails; mail not sent")


# --------------------------------------------------------------------------- storms


async def test_burst_of_identical_errors_makes_one_digest(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses, database_url, db_schema
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    clock = FakeClock()
    running = await start_notifier(
        make_settings(ERROR_DIGEST_WINDOW_SECONDS=60, NOTIFIER_CONCURRENCY=32), clock=clock
    )
    events = [gateway_error(correlation_id=f"corr-{i}") for i in range(1000)]
    await bus.publish_many(events)

    # The first one goes out at once; the other 999 fold into its digest.
    await wait_for_mails(moto_url, to=addresses.errors)
    await wait_for(
        lambda: sample(running, "notifier_error_occurrences_total") == 1000,
        timeout=60,
        message="1000 occurrences counted",
    )
    assert sample(running, "notifier_error_occurrences_folded_total") == 999
    conn = await asyncpg.connect(database_url, server_settings={"search_path": db_schema})
    try:
        assert await PgRepository(conn).count_occurrences(events[0].fingerprint) == 1000
    finally:
        await conn.close()

    clock.advance(61)  # the window ends
    mails = await wait_for_mails(moto_url, to=addresses.errors, count=2)
    assert len(mails) == 2
    report, digest = mails
    assert report["subject"] == "[Mensajero] Error en sender: GraphError"
    assert digest["subject"] == "[Mensajero] Resumen: sender GraphError ocurrió 1.000 veces"
    assert "El mismo error ocurrió 1.000 veces" in digest["body"]
    assert "Ya te avisamos por separado de 1; las otras 999 quedan contadas" in digest["body"]
    await wait_for(lambda: sample(running, "notifier_emails_sent_total", kind="digest") == 1)
    assert sample(running, "notifier_emails_sent_total", kind="error") == 1
    closed = await fetchval(
        database_url, db_schema, "SELECT occurrences FROM error_digests WHERE status = 'closed'"
    )
    assert closed == 1000


async def test_per_minute_cap_folds_the_rest_into_digests(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses, database_url, db_schema
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    clock = FakeClock()
    running = await start_notifier(
        make_settings(ERROR_MAILS_PER_MINUTE=2, ERROR_DIGEST_WINDOW_SECONDS=30), clock=clock
    )
    await bus.publish_many([gateway_error(error_type=f"Kind{i}") for i in range(5)])
    await wait_for(lambda: sample(running, "notifier_error_occurrences_total") == 5)
    await wait_for_mails(moto_url, to=addresses.errors, count=2)
    assert sample(running, "notifier_error_occurrences_folded_total") == 3

    clock.advance(61)  # windows over, a new minute: room for two more mails
    mails = await wait_for_mails(moto_url, to=addresses.errors, count=4)
    assert len(mails) == 4
    digests = mails[2:]
    # Three unreported errors, two mails allowed: one on its own, one listing the other two.
    single = [m for m in digests if m["subject"].startswith("[Mensajero] Resumen: ")]
    combined = [m for m in digests if m["subject"].startswith("[Mensajero] Resumen de 2 errores")]
    assert len(single) == 1 and len(combined) == 1
    reported = {m["subject"].split(": ")[-1] for m in mails[:2]}
    folded = {f"Kind{i}" for i in range(5)} - reported
    assert len(folded) == 3
    for kind in folded:
        assert any(kind in m["body"] for m in digests)
    left_open = await fetchval(
        database_url, db_schema, "SELECT count(*) FROM error_digests WHERE status = 'open'"
    )
    assert left_open == 0


# --------------------------------------------------------------------------- SES limits


async def test_throttling_is_retried_and_ends_in_one_email(
    bus,
    start_notifier,
    make_settings,
    moto_url,
    addresses: Addresses,
    throttling_proxy: ThrottlingProxy,
    caplog,
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.notifier")
    await create_identities(moto_url, addresses.error_sender)
    throttling_proxy.throttle = 3
    running = await start_notifier(make_settings(SES_ENDPOINT_URL=throttling_proxy.url))
    await bus.publish(gateway_error())

    await wait_for(lambda: sample(running, "notifier_emails_sent_total", kind="error") == 1)
    assert len(await moto_mails(moto_url, to=addresses.errors)) == 1
    assert throttling_proxy.sends == 4
    assert (
        sample(
            running,
            "notifier_emails_failed_total",
            kind="error",
            error_type="TooManyRequestsException",
        )
        == 3
    )
    failures = log_fields(caplog, "email send failed, will retry")
    assert [f["request_id"] for f in failures] == ["throttled-1", "throttled-2", "throttled-3"]
    assert all(f["error_type"] == "TooManyRequestsException" for f in failures)
    assert all(f["message"] == "Maximum sending rate exceeded." for f in failures)


async def test_throttling_past_the_attempts_goes_back_to_the_bus(
    bus,
    start_notifier,
    make_settings,
    moto_url,
    addresses: Addresses,
    throttling_proxy: ThrottlingProxy,
    database_url,
    db_schema,
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    throttling_proxy.throttle = 2
    running = await start_notifier(
        make_settings(SES_ENDPOINT_URL=throttling_proxy.url, SES_MAX_ATTEMPTS=2)
    )
    await bus.publish(gateway_error())
    # Two throttled attempts, then the message waits in the bus's first retry tier (1 s).
    await wait_for(lambda: sample(running, "notifier_emails_sent_total", kind="error") == 1)
    assert throttling_proxy.sends == 3
    assert len(await moto_mails(moto_url, to=addresses.errors)) == 1
    attempts = await fetchval(database_url, db_schema, "SELECT attempts FROM emails")
    assert attempts == 2  # two claims: the first delivery and the retry


async def test_rejection_is_logged_counted_dead_lettered_not_retried(
    bus,
    start_notifier,
    make_settings,
    moto_url,
    addresses: Addresses,
    throttling_proxy: ThrottlingProxy,
    caplog,
    database_url,
    db_schema,
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.notifier")
    # The "unverified" profile's email_bot is no SES identity: SES answers MessageRejected.
    running = await start_notifier(make_settings(SES_ENDPOINT_URL=throttling_proxy.url))
    await bus.publish(
        HandoffUnattended(
            case_code="C-1", customer=CUSTOMER, reason="no_agent", profile_id="unverified"
        )
    )
    dead = bus.names.dead_queue(TABLE.queue)
    await wait_for(lambda: _depth_is(bus, dead, 1), message="dead-lettered")
    assert throttling_proxy.sends == 1
    assert await moto_mails(moto_url, to=addresses.ops) == []
    labels = {"kind": "handoff_unattended", "error_type": "MessageRejected"}
    assert sample(running, "notifier_emails_failed_total", **labels) == 1
    failures = log_fields(caplog, "email send failed")
    assert len(failures) == 1
    assert failures[0]["error_type"] == "MessageRejected"
    assert "not verified" in failures[0]["message"]
    assert failures[0]["request_id"]
    status = await fetchval(database_url, db_schema, "SELECT status FROM emails")
    assert status == "failed"


async def _depth_is(bus: Bus, name: str, n: int) -> bool:
    return await queue_depth(bus, name) == n


# --------------------------------------------------------------------------- suppression


async def test_permanent_bounce_suppresses_the_address(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="mensajero.notifier")
    await create_identities(moto_url, addresses.bot, addresses.error_sender)
    running = await start_notifier(make_settings())
    await bus.publish(
        EmailBounced(
            addresses=[addresses.ops.upper()], bounce_type="Permanent", bounce_subtype="General"
        )
    )
    await bus.publish(EmailBounced(addresses=[addresses.boss], bounce_type="Transient"))
    await wait_for(
        lambda: sample(running, "notifier_addresses_suppressed_total", reason="bounce") == 1
    )
    await bus.publish(
        HandoffUnattended(case_code="C-2", customer=CUSTOMER, reason="timeout", profile_id="acme")
    )
    mails = await wait_for_mails(moto_url, to=addresses.boss)
    assert mails[0]["to"] == [addresses.boss]  # the bounced address was left out
    assert await moto_mails(moto_url, to=addresses.ops) == []
    assert sample(running, "notifier_emails_suppressed_total") == 1
    skipped = log_fields(caplog, "email to a suppressed address skipped")
    assert skipped[0]["to"] == addresses.ops
    assert skipped[0]["reason"] == "bounce"


async def test_complaint_suppresses_and_a_mail_with_no_one_left_is_skipped(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses, database_url, db_schema
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    running = await start_notifier(make_settings())
    await bus.publish(EmailComplained(addresses=[addresses.errors], feedback_type="abuse"))
    await wait_for(
        lambda: sample(running, "notifier_addresses_suppressed_total", reason="complaint") == 1
    )
    await bus.publish(gateway_error())
    await wait_for(lambda: sample(running, "notifier_emails_suppressed_total") == 1)
    status = await fetchval(database_url, db_schema, "SELECT status FROM emails")
    assert status == "suppressed"
    assert await moto_mails(moto_url, to=addresses.errors) == []


# --------------------------------------------------------------------------- idempotency


async def test_an_event_delivered_twice_sends_one_email(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses
) -> None:
    await create_identities(moto_url, addresses.error_sender, addresses.bot)
    # One message at a time, in order: when the last mail is out, the duplicates were handled.
    running = await start_notifier(make_settings(NOTIFIER_CONCURRENCY=1))
    error = gateway_error()
    closed = HandoffClosed(
        case_code="C-9",
        customer=CUSTOMER,
        end_reason="customer",
        profile_id="acme",
        transcript=[TranscriptLine(at=datetime.now(UTC), author="customer", text="gracias")],
    )
    for event in (error, error, closed, closed):
        await bus.publish(event)
    last = HandoffUnattended(
        case_code="C-10", customer=CUSTOMER, reason="no_agent", profile_id="acme"
    )
    await bus.publish(last)

    async def last_mail_out() -> bool:
        return any("C-10" in m["subject"] for m in await moto_mails(moto_url, to=addresses.ops))

    await wait_for(last_mail_out, interval=0.05, message="the last mail")
    assert len(await moto_mails(moto_url, to=addresses.errors)) == 1
    transcripts = [m for m in await moto_mails(moto_url, to=addresses.ops) if "C-9" in m["subject"]]
    assert len(transcripts) == 1
    assert sample(running, "notifier_emails_sent_total", kind="transcript") == 1
    assert sample(running, "notifier_error_occurrences_total") == 1


# --------------------------------------------------------------------------- sandbox


async def test_sandbox_creates_the_sender_identities(
    bus, start_notifier, make_settings, moto_url, addresses: Addresses, unique
) -> None:
    sender = f"sandbox-{unique}@example.com"
    await start_notifier(make_settings(MENSAJERO_ENV="sandbox", ERROR_FROM_EMAIL=sender))
    await bus.publish(gateway_error())
    mails = await wait_for_mails(moto_url, to=addresses.errors)
    assert mails[0]["source"] == sender
