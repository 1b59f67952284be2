"""Pure parts of the operators' alerts: which of Meta's signals need them, what the mail says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from notifier.alert_mail import render_alert
from notifier.alerts import (
    account_alert,
    quality_alert,
    template_category_alert,
    template_status_alert,
)
from notifier.domain import ALERT_KINDS, Alert, DigestEntry, ErrorInfo
from notifier.report_mail import render_digest
from notifier.texts import DEFAULT_TEXTS, Texts, load_texts, zone
from shared.signals import (
    AccountUpdate,
    PhoneNumberQuality,
    TemplateCategoryUpdate,
    TemplateStatusUpdate,
)

TZ = zone("America/Argentina/Buenos_Aires")
AT = datetime(2026, 11, 25, 13, 0, 0, tzinfo=UTC)
TEXTS = Texts()
WABA = "200000000000001"


def disabled(**ban: str) -> AccountUpdate:
    info = {"waba_ban_state": "DISABLE", "waba_ban_date": "November 25, 2026", **ban}
    return AccountUpdate(waba_id=WABA, event="DISABLED_UPDATE", details={"ban_info": info})


def paused(**kw: object) -> TemplateStatusUpdate:
    values: dict[str, object] = {
        "waba_id": WABA,
        "template_id": "1234567890",
        "template_name": "aviso_pedido",
        "language": "es_AR",
        "event": "PAUSED",
        "reason": "NONE",
    }
    values.update(kw)
    return TemplateStatusUpdate(**values)


# --------------------------------------------------------------------------- which signals


def test_a_disabled_account_is_an_alert_with_metas_ban() -> None:
    alert = account_alert(disabled(), TEXTS, TZ)
    assert alert is not None
    assert alert.kind == "account.disabled"
    assert alert.values == {
        "waba_id": WABA,
        "meta_event": "DISABLED_UPDATE",
        "ban_state": "deshabilitada",
        "ban_date": "November 25, 2026",
    }
    scheduled = account_alert(disabled(waba_ban_state="SCHEDULE_FOR_DISABLE"), TEXTS, TZ)
    assert (
        scheduled is not None and scheduled.values["ban_state"] == "programada para deshabilitarse"
    )


def test_account_signals_that_need_no_attention() -> None:
    assert account_alert(disabled(waba_ban_state="REINSTATE"), TEXTS, TZ) is None
    for event in ("ACCOUNT_RECONNECTED", "PARTNER_ADDED", "VOLUME_BASED_PRICING_TIER_UPDATE"):
        assert account_alert(AccountUpdate(waba_id=WABA, event=event), TEXTS, TZ) is None
    lifted = AccountUpdate(event="ACCOUNT_RESTRICTION", details={"restriction_info": []})
    assert account_alert(lifted, TEXTS, TZ) is None


def test_a_restriction_says_what_is_restricted_and_until_when() -> None:
    expiration = int(datetime(2026, 12, 2, 15, 30, tzinfo=UTC).timestamp())
    restriction = {
        "restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING",
        "expiration": expiration,
    }
    other = {"restriction_type": "RESTRICTED_SOMETHING_NEW"}
    event = AccountUpdate(
        waba_id=WABA,
        event="ACCOUNT_RESTRICTION",
        details={"restriction_info": [restriction, other]},
    )
    alert = account_alert(event, TEXTS, TZ)
    assert alert is not None and alert.kind == "account.restricted"
    assert alert.values["restrictions"] == (
        "iniciar conversaciones con clientes (mensajes iniciados por el negocio), hasta el"
        " 02/12/2026 12:30:00 -03; RESTRICTED_SOMETHING_NEW"
    )


def test_violation_and_offboarding() -> None:
    violation = AccountUpdate(
        event="ACCOUNT_VIOLATION", details={"violation_info": {"violation_type": "SCAM"}}
    )
    alert = account_alert(violation, TEXTS, TZ)
    assert alert is not None and alert.kind == "account.violation"
    assert alert.values == {"meta_event": "ACCOUNT_VIOLATION", "violation_type": "SCAM"}
    for event in ("ACCOUNT_OFFBOARDED", "ACCOUNT_DELETED"):
        gone = account_alert(AccountUpdate(waba_id=WABA, event=event), TEXTS, TZ)
        assert gone is not None and gone.kind == "account.offboarded"


def test_a_number_whose_limit_or_quality_drops() -> None:
    down = PhoneNumberQuality(
        display_phone_number="15550000001",
        event="DOWNGRADE",
        old_limit="TIER_10K",
        current_limit="TIER_2K",
    )
    alert = quality_alert(down, TEXTS)
    assert alert is not None and alert.kind == "quality.limit"
    assert alert.values["old_limit"] == "10.000 clientes por día"
    assert alert.values["current_limit"] == "2.000 clientes por día"
    # A tier going down without Meta saying DOWNGRADE is a drop too.
    quiet = PhoneNumberQuality(event="ONBOARDING", old_limit="TIER_1K", current_limit="TIER_250")
    assert (quality_alert(quiet, TEXTS) or Alert("none")).kind == "quality.limit"
    flagged = quality_alert(PhoneNumberQuality(display_phone_number="1555", event="FLAGGED"), TEXTS)
    assert flagged is not None and flagged.kind == "quality.flagged"
    for event, old, new in [
        ("THROUGHPUT_UPGRADE", None, "TIER_UNLIMITED"),
        ("UPGRADE", "TIER_2K", "TIER_10K"),
        ("UNFLAGGED", None, "TIER_2K"),
    ]:
        signal = PhoneNumberQuality(event=event, old_limit=old, current_limit=new)
        assert quality_alert(signal, TEXTS) is None, event


def test_template_paused_disabled_or_rejected() -> None:
    alert = template_status_alert(paused(), TEXTS, TZ)
    assert alert is not None and alert.kind == "template.paused"
    assert alert.values == {
        "template": "aviso_pedido",
        "language": "es_AR",
        "template_id": "1234567890",
    }  # Meta's reason NONE says nothing: left out
    rejected = paused(
        event="REJECTED",
        reason="INCORRECT_CATEGORY",
        raw={"rejection_info": {"reason": "Promos in a utility", "recommendation": "Usá UTILITY"}},
    )
    alert = template_status_alert(rejected, TEXTS, TZ)
    assert alert is not None and alert.kind == "template.rejected"
    assert alert.values["reason"] == "la categoría no corresponde al contenido"
    assert alert.values["reason_detail"] == "Promos in a utility"
    assert alert.values["recommendation"] == "Usá UTILITY"
    gone = template_status_alert(
        paused(
            event="DISABLED", reason="SOMETHING_ELSE", raw={"disable_info": {"disable_date": 1}}
        ),
        TEXTS,
        TZ,
    )
    assert gone is not None and gone.kind == "template.disabled"
    assert gone.values["reason"] == "SOMETHING_ELSE"  # a code without a text, as Meta sent it
    assert gone.values["disable_date"] == "31/12/1969 21:00:01 -03"
    for event in ("APPROVED", "PENDING", "FLAGGED", "IN_APPEAL", "PENDING_DELETION"):
        assert template_status_alert(paused(event=event), TEXTS, TZ) is None, event


def test_a_utility_template_made_marketing() -> None:
    moved = TemplateCategoryUpdate(
        template_name="aviso_pedido",
        language="es_AR",
        previous_category="UTILITY",
        new_category="MARKETING",
    )
    alert = template_category_alert(moved, TEXTS, TZ)
    assert alert is not None and alert.kind == "template.marketing"
    assert alert.values["previous_category"] == "utilidad"
    assert alert.values["new_category"] == "marketing"
    announced = moved.model_copy(update={"effective_at": datetime(2026, 12, 1, 3, tzinfo=UTC)})
    alert = template_category_alert(announced, TEXTS, TZ)
    assert alert is not None and alert.values["effective_at"] == "01/12/2026 00:00:00 -03"
    for previous, new in [("MARKETING", "MARKETING"), ("MARKETING", "UTILITY"), (None, "UTILITY")]:
        same = moved.model_copy(update={"previous_category": previous, "new_category": new})
        assert template_category_alert(same, TEXTS, TZ) is None


# --------------------------------------------------------------------------- the mail


def test_the_mail_says_what_happened_what_it_means_and_what_to_do() -> None:
    alert = account_alert(disabled(), TEXTS, TZ)
    assert alert is not None
    rendered = render_alert(alert, AT, TEXTS, TZ)
    assert rendered.subject == f"[Mensajero] Meta deshabilitó la cuenta de WhatsApp Business {WABA}"
    text = rendered.text
    assert f"Meta deshabilitó la cuenta de WhatsApp Business {WABA}." in text
    assert "Estado de la cuenta: deshabilitada" in text
    assert "Fecha de la baja: November 25, 2026" in text
    assert "Recibido: 25/11/2026 10:00:00 -03" in text
    assert "Qué significa para el negocio" in text and "no sale ningún mensaje" in text
    assert "Qué hacer" in text and "apelá la decisión" in text


def test_a_placeholder_without_a_value_reads_sin_dato_and_html_is_escaped() -> None:
    alert = template_status_alert(paused(template_name="<b>promo</b>", language=None), TEXTS, TZ)
    assert alert is not None
    rendered = render_alert(alert, AT, TEXTS, TZ)
    assert rendered.subject == "[Mensajero] Meta pausó la plantilla <b>promo</b> ((sin dato))"
    assert "&lt;b&gt;promo&lt;/b&gt;" in rendered.html and "<b>promo</b>" not in rendered.html
    limit = quality_alert(PhoneNumberQuality(event="DOWNGRADE", current_limit="TIER_250"), TEXTS)
    assert limit is not None
    text = render_alert(limit, AT, TEXTS, TZ).text
    assert "número (sin dato): de (sin dato) a 250 clientes por día." in text


def test_alert_texts_come_from_the_texts_file(tmp_path: Path) -> None:
    path = tmp_path / "texts.yaml"
    path.write_text(
        'alert.account.disabled.title: "Cuenta {waba_id} dada de baja"\n'
        'alert.account.disabled.action: "Llamá a soporte."\n'
        'ban_state.DISABLE: "suspendida"\n',
        "utf-8",
    )
    texts = load_texts(str(path))
    alert = account_alert(disabled(), texts, TZ)
    assert alert is not None
    rendered = render_alert(alert, AT, texts, TZ)
    assert rendered.subject == f"[Mensajero] Cuenta {WABA} dada de baja"
    assert "Llamá a soporte." in rendered.text
    assert "Estado de la cuenta: suspendida" in rendered.text


def test_identical_alerts_fold_together_and_apart_from_errors() -> None:
    first, again = (template_status_alert(paused(), TEXTS, TZ) for _ in range(2))
    other = template_status_alert(paused(template_name="otra"), TEXTS, TZ)

    def info(alert: Alert | None, event_id: str) -> ErrorInfo:
        return ErrorInfo(event_id, "whatsapp", "template.paused", "m", AT, alert=alert)

    assert info(first, "a").fingerprint == info(again, "b").fingerprint
    assert info(first, "a").fingerprint != info(other, "c").fingerprint
    assert info(first, "a").fingerprint != info(None, "d").fingerprint
    assert info(first, "a").kind == "alert" and info(None, "d").kind == "error"
    assert first is not None and Alert.from_json(first.to_json()) == first


def entry(alert: Alert | None, digest_id: int = 1, occurrences: int = 3) -> DigestEntry:
    return DigestEntry(
        digest_id=digest_id,
        fingerprint=f"f{digest_id}",
        service="whatsapp" if alert else "sender",
        error_type=alert.kind if alert else "GraphError",
        message="m",
        meta_code=None,
        phone_number_id=None,
        occurrences=occurrences,
        reported=1,
        first_at=AT,
        last_at=AT + timedelta(minutes=4),
        alert=alert,
    )


def test_a_digest_of_one_alert_explains_it() -> None:
    alert = template_status_alert(paused(), TEXTS, TZ)
    rendered = render_digest([entry(alert)], TEXTS, TZ)
    assert rendered.subject == (
        "[Mensajero] Resumen: Meta pausó la plantilla aviso_pedido (es_AR) (3 veces)"
    )
    text = rendered.text
    assert "El mismo aviso de Meta llegó 3 veces entre el 25/11/2026 10:00:00 -03" in text
    assert "Plantilla: aviso_pedido" in text and "Cantidad de veces: 3" in text
    assert "Ya te avisamos por separado de 1; las otras 2 quedan contadas" in text
    assert "Frená las campañas que usan esta plantilla" in text


def test_a_digest_of_alerts_and_errors() -> None:
    alert = account_alert(disabled(), TEXTS, TZ)
    rendered = render_digest([entry(alert), entry(None, digest_id=2, occurrences=2)], TEXTS, TZ)
    assert rendered.subject == "[Mensajero] Resumen de 2 avisos (5 veces en total)"
    assert f"Meta deshabilitó la cuenta de WhatsApp Business {WABA}\n---" in rendered.text
    assert "sender: GraphError" in rendered.text
    assert "Qué hacer" in rendered.text


def test_every_alert_kind_has_its_texts() -> None:
    for kind in ALERT_KINDS:
        for part in ("title", "what", "meaning", "action"):
            assert f"alert.{kind}.{part}" in DEFAULT_TEXTS, (kind, part)
