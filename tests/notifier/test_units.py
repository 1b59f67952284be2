"""Pure parts of the notifier: settings, templates, digest planning, pacing."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from notifier.bootstrap import Adapters, bootstrap
from notifier.company_mail import render_transcript, render_unattended
from notifier.domain import DigestEntry, ErrorInfo, from_webhook_errors, plan_digest_mails
from notifier.pacing import Pacer, backoff_delay
from notifier.report_mail import render_digest, render_error
from notifier.settings import Settings
from notifier.texts import Texts, TextsError, load_texts, number, zone
from shared.events import (
    CaseHandler,
    ErrorReported,
    HandoffClosed,
    HandoffUnattended,
    Identity,
    MetaError,
    TranscriptLine,
    WebhookErrors,
)
from shared.profiles import CompanyProfile
from shared.settings import SettingsError, load_settings
from tests.fakes.notifier import FakeMailer

TZ = zone("America/Argentina/Buenos_Aires")
AT = datetime(2026, 11, 25, 13, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MENSAJERO_ENV",
        "ERROR_LOG_EMAIL",
        "SES_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "RETENTION_DAYS",
        "EMAIL_LOG_RETENTION_DAYS",
    ):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- settings


def test_error_log_email_is_required() -> None:
    with pytest.raises(SettingsError, match="ERROR_LOG_EMAIL es requerido"):
        load_settings(Settings)


def test_defaults() -> None:
    settings = load_settings(Settings, ERROR_LOG_EMAIL="ops@example.com")
    assert settings.service_name == "notifier"
    assert settings.db_schema == "notifier"
    assert settings.AWS_REGION == "us-east-1"
    assert settings.AWS_ACCESS_KEY_ID is None and settings.AWS_SECRET_ACCESS_KEY is None
    assert settings.SES_ENDPOINT_URL is None and not settings.ses_is_local
    assert settings.ERROR_FROM_EMAIL == "notificaciones.chatbot@gmail.com"
    assert settings.NOTIFIER_PORT == 9103
    assert settings.SES_RATE_PER_SECOND == 1
    assert settings.reply_to == []


def test_sandbox_defaults_point_at_local_moto() -> None:
    settings = load_settings(Settings, MENSAJERO_ENV="sandbox")
    assert settings.ERROR_LOG_EMAIL == "errores@example.com"
    assert settings.SES_ENDPOINT_URL == "http://127.0.0.1:8095"
    assert settings.ses_is_local and settings.creates_sandbox_identities
    secret = settings.AWS_SECRET_ACCESS_KEY
    assert secret is not None and secret.get_secret_value() == "testing"


def test_remote_endpoint_is_not_local_and_addresses_split() -> None:
    settings = load_settings(
        Settings,
        ERROR_LOG_EMAIL="a@example.com, b@example.com;c@example.com",
        SES_ENDPOINT_URL="https://email.us-east-1.amazonaws.com",
        REPLY_TO_EMAIL="r@example.com",
    )
    assert not settings.ses_is_local and not settings.creates_sandbox_identities
    assert settings.error_recipients == ["a@example.com", "b@example.com", "c@example.com"]
    assert settings.reply_to == ["r@example.com"]


def test_identities_are_created_only_in_sandbox_mode_at_moto() -> None:
    def make(**kw: str) -> Settings:
        return load_settings(Settings, ERROR_LOG_EMAIL="o@example.com", **kw)

    assert not make(SES_ENDPOINT_URL="http://127.0.0.1:8095").creates_sandbox_identities
    compose = make(MENSAJERO_ENV="sandbox", SES_ENDPOINT_URL="http://ses:8095")
    assert not compose.creates_sandbox_identities
    assert make(
        MENSAJERO_ENV="sandbox", SES_ENDPOINT_URL="http://ses:8095", SES_SANDBOX_IDENTITIES="true"
    ).creates_sandbox_identities
    assert not make(SES_SANDBOX_IDENTITIES="true").creates_sandbox_identities


# --------------------------------------------------------------------------- domain


def entry(digest_id: int, occurrences: int = 3, reported: int = 1) -> DigestEntry:
    return DigestEntry(
        digest_id=digest_id,
        fingerprint=f"f{digest_id}",
        service="gateway",
        error_type=f"E{digest_id}",
        message="boom",
        meta_code=None,
        phone_number_id=None,
        occurrences=occurrences,
        reported=reported,
        first_at=AT,
        last_at=AT + timedelta(minutes=4),
    )


def test_plan_sends_one_mail_per_digest_when_there_is_room() -> None:
    due = [entry(1), entry(2)]
    assert plan_digest_mails(due, capacity=5) == [[due[0]], [due[1]]]


def test_plan_skips_digests_already_reported_in_full() -> None:
    assert plan_digest_mails([entry(1, occurrences=1, reported=1)], capacity=5) == []


def test_plan_puts_the_overflow_in_the_last_mail() -> None:
    due = [entry(i) for i in range(1, 6)]
    plan = plan_digest_mails(due, capacity=3)
    assert plan == [[due[0]], [due[1]], due[2:]]
    assert sum(len(group) for group in plan) == 5  # nothing left out


def test_plan_waits_when_there_is_no_room() -> None:
    assert plan_digest_mails([entry(1)], capacity=0) == []


def test_fingerprint_matches_the_event_catalog() -> None:
    event = ErrorReported(service="s", error_type="T", message="m", meta_code=4)
    assert ErrorInfo.from_event(event).fingerprint == event.fingerprint


def test_webhook_errors_become_one_occurrence_each() -> None:
    event = WebhookErrors(
        phone_number_id="1",
        errors=[MetaError(code=131000, title="A"), MetaError(code=4, message="B", details="d")],
    )
    infos = from_webhook_errors(event)
    assert [i.meta_code for i in infos] == [131000, 4]
    assert [i.message for i in infos] == ["A", "B"]
    assert infos[1].details == {"details": "d"}
    assert len({i.event_id for i in infos}) == 2
    assert from_webhook_errors(event)[0].event_id == infos[0].event_id  # stable


# --------------------------------------------------------------------------- templates


def test_numbers_the_rio_de_la_plata_way() -> None:
    assert number(1000) == "1.000"
    assert number(1234567) == "1.234.567"
    assert number(7) == "7"


def test_error_mail_text_and_html() -> None:
    info = ErrorInfo(
        event_id="e1",
        service="gateway",
        error_type="SignatureError",
        message="bad <signature> & more",
        occurred_at=AT,
        meta_code=131000,
        correlation_id="c-1",
        details={"ip": "10.0.0.1"},
    )
    rendered = render_error(info, Texts(), TZ)
    assert rendered.subject == "[Mensajero] Error en gateway: SignatureError"
    assert "Mensaje: bad <signature> & more" in rendered.text
    assert "Código de Meta: 131000" in rendered.text
    assert "Primera vez: 25/11/2026 10:00:00 -03" in rendered.text
    assert '"ip": "10.0.0.1"' in rendered.text
    assert "bad &lt;signature&gt; &amp; more" in rendered.html
    assert "<signature>" not in rendered.html


def test_digest_of_several_errors() -> None:
    rendered = render_digest([entry(1, 1000, 1), entry(2, 5, 0)], Texts(), TZ)
    assert rendered.subject == "[Mensajero] Resumen de 2 errores (1.005 veces en total)"
    assert "Cantidad de veces: 1.000" in rendered.text
    assert "Cantidad de veces: 5" in rendered.text
    assert "gateway: E1" in rendered.text and "gateway: E2" in rendered.text


def test_texts_are_configurable_globally_and_per_profile() -> None:
    texts = Texts({"error.subject": "[Ops] {service} failed: {error_type}"})
    info = ErrorInfo(event_id="e", service="s", error_type="T", message="m", occurred_at=AT)
    assert render_error(info, texts, TZ).subject == "[Ops] s failed: T"

    profile = CompanyProfile(
        name="Acme", texts={"email.handoff.no_agent.subject": "Sin agentes: {case_code}"}
    )
    event = HandoffUnattended(case_code="C-1", customer=Identity(phone="+54911"), reason="no_agent")
    assert render_unattended(event, profile, texts, TZ).subject == "Sin agentes: C-1"


def test_unattended_mail_for_a_customer_without_phone() -> None:
    event = HandoffUnattended(
        case_code="C-2", customer=Identity(user_id="AR.123"), reason="after_hours"
    )
    rendered = render_unattended(event, CompanyProfile(name="Acme"), Texts(), TZ)
    assert "AR.123 pidió hablar con una persona fuera del horario de atención." in rendered.text
    assert "Comunicate con el cliente" in rendered.text


def test_transcript_text_body() -> None:
    event = HandoffClosed(
        case_code="C-3",
        customer=Identity(phone="+5491100000001", name="Juan"),
        agent_phone="+5491100000000",
        end_reason="idle",
        transcript=[
            TranscriptLine(at=AT, author="customer", text="hola"),
            TranscriptLine(at=AT, author="bot", text="te paso con alguien"),
        ],
    )
    rendered = render_transcript(event, CompanyProfile(name="Acme"), Texts(), TZ)
    assert rendered.subject == "[Acme] Conversación del caso C-3 con Juan (+5491100000001)"
    assert "[25/11 10:00] Cliente: hola" in rendered.text
    assert "[25/11 10:00] Bot: te paso con alguien" in rendered.text
    assert "Cómo terminó: por inactividad" in rendered.text


def test_transcript_shows_who_handled_the_case_and_the_rating() -> None:
    later = AT + timedelta(minutes=15)
    event = HandoffClosed(
        case_code="C-5",
        customer=Identity(phone="+5491100000001", name="Juan"),
        agent_phone="+5491100000002",
        end_reason="agent",
        transcript=[TranscriptLine(at=AT, author="customer", text="hola")],
        handlers=[
            CaseHandler(agent_phone="+5491100000000", agent_name="Ana", since=AT, until=later),
            CaseHandler(agent_phone="+5491100000002", since=later, until=later),
        ],
        rating=3,
        rating_label="😀 Muy bien",
    )
    rendered = render_transcript(event, CompanyProfile(name="Acme"), Texts(), TZ)
    assert (
        "Lo atendieron: Ana (+5491100000000) 10:00–10:15 → +5491100000002 10:15–10:15"
        in rendered.text
    )
    assert "Calificación del cliente: 😀 Muy bien (3 de 3)" in rendered.text


def test_a_customer_without_a_phone_is_shown_by_username_and_bsuid() -> None:
    event = HandoffClosed(
        case_code="C-4",
        customer=Identity(name="Ana", username="ana", user_id="AR.13491208655302741918"),
        agent_phone="+5491100000000",
        end_reason="agent",
        transcript=[TranscriptLine(at=AT, author="customer", text="hola")],
    )
    rendered = render_transcript(event, CompanyProfile(name="Acme"), Texts(), TZ)
    assert rendered.subject == "[Acme] Conversación del caso C-4 con Ana (@ana)"
    assert "Usuario de WhatsApp: @ana" in rendered.text
    assert "ID de WhatsApp (BSUID): AR.13491208655302741918" in rendered.text
    assert "Teléfono" not in rendered.text


def test_unknown_time_zone_falls_back_to_utc() -> None:
    assert zone("Nowhere/Atlantis") is UTC


# --------------------------------------------------------------------------- pacing


async def test_pacer_spaces_calls() -> None:
    pacer = Pacer(rate_per_second=50)
    started = time.monotonic()
    for _ in range(6):
        await pacer.wait()
    assert time.monotonic() - started >= 5 / 50 * 0.99


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 8.0, rng) for n in range(1, 7)]
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert all(4.0 <= d <= 8.0 for d in delays[3:])


def test_texts_file(tmp_path) -> None:
    good = tmp_path / "texts.yaml"
    good.write_text('error.subject: "[Alerta] {service}"\n', "utf-8")
    info = ErrorInfo(event_id="e", service="s", error_type="T", message="m", occurred_at=AT)
    assert render_error(info, load_texts(str(good)), TZ).subject == "[Alerta] s"

    typo = tmp_path / "typo.yaml"
    typo.write_text("error.subjet: x\n", "utf-8")
    with pytest.raises(TextsError, match="unknown text keys"):
        load_texts(str(typo))
    with pytest.raises(TextsError, match="EMAIL_TEXTS_FILE"):
        load_texts(str(tmp_path / "missing.yaml"))


def test_a_digest_of_one_says_vez() -> None:
    rendered = render_digest([entry(1, occurrences=1, reported=0)], Texts(), TZ)
    assert rendered.subject == "[Mensajero] Resumen: gateway E1 ocurrió 1 vez"
    assert "El mismo error ocurrió 1 vez entre" in rendered.text


# --------------------------------------------------------------------------- retention


def test_the_mail_log_follows_retention_days() -> None:
    settings = load_settings(Settings, ERROR_LOG_EMAIL="o@example.com", RETENTION_DAYS="45")
    assert settings.RETENTION_DAYS == 45
    assert settings.retention_warning is None


def test_email_log_retention_days_is_deprecated_but_still_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Set alone, it is the notifier's RETENTION_DAYS (never under the minimum of 8).
    monkeypatch.setenv("EMAIL_LOG_RETENTION_DAYS", "90")
    settings = load_settings(Settings, ERROR_LOG_EMAIL="o@example.com")
    assert settings.RETENTION_DAYS == 90
    assert settings.retention_warning is not None
    assert "EMAIL_LOG_RETENTION_DAYS is deprecated" in settings.retention_warning
    assert "RETENTION_DAYS" in settings.retention_warning.removeprefix("EMAIL_LOG_")
    monkeypatch.setenv("EMAIL_LOG_RETENTION_DAYS", "3")
    assert load_settings(Settings, ERROR_LOG_EMAIL="o@example.com").RETENTION_DAYS == 8
    # RETENTION_DAYS set too: it wins.
    monkeypatch.setenv("RETENTION_DAYS", "20")
    assert load_settings(Settings, ERROR_LOG_EMAIL="o@example.com").RETENTION_DAYS == 20
    monkeypatch.setenv("EMAIL_LOG_RETENTION_DAYS", "many")
    with pytest.raises(SettingsError, match="EMAIL_LOG_RETENTION_DAYS"):
        load_settings(Settings, ERROR_LOG_EMAIL="o@example.com")


def test_bootstrap_warns_of_the_deprecated_setting_and_prunes_the_mail_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(Settings, ERROR_LOG_EMAIL="o@example.com", EMAIL_LOG_RETENTION_DAYS=40)
    with caplog.at_level(logging.WARNING, logger="mensajero.notifier"):
        service = bootstrap(settings, Adapters(mailer=FakeMailer()))
    assert any("EMAIL_LOG_RETENTION_DAYS is deprecated" in r.getMessage() for r in caplog.records)
    assert [loop.name for loop in service.loops] == ["notifier-digests", "retention"]
    assert [s.spec.service for s in service.subscriptions] == ["notifier"]
