"""Email texts and bodies (plain text and HTML). Spanish (Río de la Plata) by default.

Every text has a key; a business overrides it in ``EMAIL_TEXTS_FILE`` (all mail) or in its
company profile's ``texts`` under ``email.<key>`` (that profile's mail). Texts take
``{placeholders}``; values are escaped in the HTML body.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from notifier.domain import DigestEntry, ErrorInfo
from shared.events import HandoffClosed, HandoffUnattended, Identity, TranscriptLine
from shared.profiles import CompanyProfile

DEFAULT_TEXTS: dict[str, str] = {
    # error reports
    "error.subject": "[Mensajero] Error en {service}: {error_type}",
    "error.intro": "Se produjo un error en el servicio {service}.",
    "error.footer": "Si el mismo error se repite, te llega un resumen con la cantidad de veces.",
    "label.service": "Servicio",
    "label.error_type": "Tipo de error",
    "label.message": "Mensaje",
    "label.meta_code": "Código de Meta",
    "label.phone_number_id": "Número de WhatsApp (ID)",
    "label.correlation_id": "ID de correlación",
    "label.correlation_ids": "IDs de correlación (muestra)",
    "label.first_at": "Primera vez",
    "label.last_at": "Última vez",
    "label.occurrences": "Cantidad de veces",
    "label.details": "Detalles",
    # digests
    "digest.subject.one": "[Mensajero] Resumen: {service} {error_type} ocurrió {times}",
    "digest.subject.many": "[Mensajero] Resumen de {errors} errores ({times} en total)",
    "digest.intro.one": "El mismo error ocurrió {times} entre el {first} y el {last}.",
    "digest.intro.many": "Para no llenarte la casilla, juntamos estos {errors} errores en un solo"
    " correo ({times} en total).",
    "digest.reported": "Ya te avisamos por separado de {reported}; las otras {unreported} quedan"
    " contadas en este resumen.",
    "digest.footer": "Ninguna ocurrencia se descartó: todas están contadas acá.",
    # handoff not attended
    "handoff.no_agent.subject": "[{company}] Un cliente pidió hablar con una persona y no había"
    " agentes disponibles (caso {case_code})",
    "handoff.no_agent.intro": "{customer} pidió hablar con una persona, pero no había ningún"
    " agente disponible para atenderlo.",
    "handoff.after_hours.subject": "[{company}] Un cliente pidió hablar con una persona fuera del"
    " horario de atención (caso {case_code})",
    "handoff.after_hours.intro": "{customer} pidió hablar con una persona fuera del horario de"
    " atención.",
    "handoff.timeout.subject": "[{company}] Nadie atendió a un cliente que pidió hablar con una"
    " persona (caso {case_code})",
    "handoff.timeout.intro": "{customer} pidió hablar con una persona y ningún agente respondió"
    " a tiempo.",
    "handoff.action": "Comunicate con el cliente lo antes posible por WhatsApp.",
    "handoff.last_messages": "Últimos mensajes",
    "label.customer": "Cliente",
    "label.phone": "Teléfono",
    "label.case_code": "Caso",
    "label.requested_at": "Fecha",
    "label.agent": "Agente",
    "label.end_reason": "Cómo terminó",
    # transcript
    "transcript.subject": "[{company}] Conversación del caso {case_code} con {customer}",
    "transcript.intro": "Terminó la conversación de un agente con {customer}. Esta es la"
    " transcripción.",
    "transcript.empty": "(sin mensajes)",
    "end_reason.agent": "la cerró el agente",
    "end_reason.customer": "la cerró el cliente",
    "end_reason.timeout": "se agotó el tiempo de espera",
    "end_reason.no_agent": "no había agentes disponibles",
    "end_reason.after_hours": "fuera del horario de atención",
    "end_reason.idle": "por inactividad",
    "author.customer": "Cliente",
    "author.agent": "Agente",
    "author.bot": "Bot",
    "author.system": "Sistema",
    "unknown_customer": "Un cliente",
    "signature": "Mensajero",
    "times.one": "1 vez",
    "times.other": "{count} veces",
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Texts:
    """Texts by key: overrides first, then the defaults."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._overrides = dict(overrides or {})

    def get(self, key: str, **values: Any) -> str:
        template = self._overrides.get(key, DEFAULT_TEXTS.get(key, key))
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template

    def times(self, n: int) -> str:
        """'1 vez', '1.000 veces'."""
        return self.get("times.one" if n == 1 else "times.other", count=number(n))

    def for_profile(self, profile: CompanyProfile) -> Texts:
        """These texts with the profile's ``email.<key>`` texts on top."""
        mine = {
            k.removeprefix("email."): v for k, v in profile.texts.items() if k.startswith("email.")
        }
        return Texts({**self._overrides, **mine})


class TextsError(Exception):
    """EMAIL_TEXTS_FILE cannot be used; the message names the file."""


def load_texts(path: str | None) -> Texts:
    """Read ``EMAIL_TEXTS_FILE`` (YAML or JSON: text key -> text)."""
    if not path:
        return Texts()
    file = Path(path)
    try:
        raw = file.read_text("utf-8")
        data = json.loads(raw) if file.suffix == ".json" else yaml.safe_load(raw)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise TextsError(f"EMAIL_TEXTS_FILE {path}: {error}") from error
    if not isinstance(data, dict):
        raise TextsError(f"EMAIL_TEXTS_FILE {path} must map text keys to texts")
    unknown = sorted(str(k) for k in data if str(k) not in DEFAULT_TEXTS)
    if unknown:
        raise TextsError(f"EMAIL_TEXTS_FILE {path}: unknown text keys {unknown}")
    return Texts({str(k): str(v) for k, v in data.items()})


def zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def number(n: int) -> str:
    """An integer the Río de la Plata way: 1.000."""
    return f"{n:,}".replace(",", ".")


def when(moment: datetime, tz: tzinfo) -> str:
    local = moment.astimezone(tz)
    return local.strftime("%d/%m/%Y %H:%M:%S ") + (local.strftime("%Z") or "UTC")


# --------------------------------------------------------------------------- body building


@dataclass
class _Body:
    """Paragraphs, label/value tables and line lists, rendered both as text and HTML."""

    parts: list[tuple[str, Any]]

    def __init__(self) -> None:
        self.parts = []

    def paragraph(self, text: str) -> _Body:
        self.parts.append(("p", text))
        return self

    def table(self, rows: Sequence[tuple[str, str | None]]) -> _Body:
        self.parts.append(("table", [(k, v) for k, v in rows if v not in (None, "")]))
        return self

    def heading(self, text: str) -> _Body:
        self.parts.append(("h", text))
        return self

    def lines(self, items: Sequence[str]) -> _Body:
        self.parts.append(("lines", list(items)))
        return self

    def text(self) -> str:
        out: list[str] = []
        for kind, value in self.parts:
            if kind == "p":
                out.append(value)
            elif kind == "h":
                out.append(f"{value}\n{'-' * len(value)}")
            elif kind == "table":
                out.append("\n".join(f"{k}: {v}" for k, v in value))
            else:
                out.append("\n".join(value))
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        out = [
            '<!DOCTYPE html><html lang="es"><head><meta charset="utf-8">'
            f"<title>{e(title)}</title></head>"
            '<body style="font-family: Arial, Helvetica, sans-serif; color: #222;">'
        ]
        for kind, value in self.parts:
            if kind == "p":
                out.append(f"<p>{e(value)}</p>")
            elif kind == "h":
                out.append(f"<h3>{e(value)}</h3>")
            elif kind == "table":
                rows = "".join(
                    f'<tr><th align="left" style="padding: 2px 12px 2px 0;">{e(k)}</th>'
                    f"<td>{e(v)}</td></tr>"
                    for k, v in value
                )
                out.append(f"<table>{rows}</table>")
            else:
                items = "".join(f"<li>{e(item)}</li>" for item in value)
                out.append(f"<ul>{items}</ul>")
        out.append("</body></html>")
        return "".join(out)


def _details(details: Mapping[str, Any]) -> str | None:
    if not details:
        return None
    return json.dumps(details, ensure_ascii=False, sort_keys=True, default=str)[:2000]


def _done(subject: str, body: _Body) -> Rendered:
    return Rendered(subject=subject[:900], text=body.text(), html=body.html(subject))


# --------------------------------------------------------------------------- error mail


def render_error(info: ErrorInfo, texts: Texts, tz: tzinfo) -> Rendered:
    t = texts.get
    subject = t("error.subject", service=info.service, error_type=info.error_type)
    body = _Body().paragraph(t("error.intro", service=info.service))
    body.table(
        [
            (t("label.service"), info.service),
            (t("label.error_type"), info.error_type),
            (t("label.message"), info.message),
            (t("label.meta_code"), str(info.meta_code) if info.meta_code is not None else None),
            (t("label.phone_number_id"), info.phone_number_id),
            (t("label.correlation_id"), info.correlation_id),
            (t("label.first_at"), when(info.occurred_at, tz)),
            (t("label.last_at"), when(info.occurred_at, tz)),
            (t("label.occurrences"), number(1)),
            (t("label.details"), _details(info.details)),
        ]
    )
    body.paragraph(t("error.footer"))
    return _done(subject, body)


def render_digest(entries: Sequence[DigestEntry], texts: Texts, tz: tzinfo) -> Rendered:
    t = texts.get
    total = sum(entry.occurrences for entry in entries)
    if len(entries) == 1:
        only = entries[0]
        subject = t(
            "digest.subject.one",
            service=only.service,
            error_type=only.error_type,
            count=number(only.occurrences),
            times=texts.times(only.occurrences),
        )
        body = _Body().paragraph(
            t(
                "digest.intro.one",
                count=number(only.occurrences),
                times=texts.times(only.occurrences),
                first=when(only.first_at, tz),
                last=when(only.last_at, tz),
            )
        )
    else:
        many = {"errors": number(len(entries)), "count": number(total), "times": texts.times(total)}
        subject = t("digest.subject.many", **many)
        body = _Body().paragraph(t("digest.intro.many", **many))
    for entry in entries:
        if len(entries) > 1:
            body.heading(f"{entry.service}: {entry.error_type}")
        body.table(
            [
                (t("label.service"), entry.service),
                (t("label.error_type"), entry.error_type),
                (t("label.message"), entry.message),
                (
                    t("label.meta_code"),
                    str(entry.meta_code) if entry.meta_code is not None else None,
                ),
                (t("label.phone_number_id"), entry.phone_number_id),
                (t("label.occurrences"), number(entry.occurrences)),
                (t("label.first_at"), when(entry.first_at, tz)),
                (t("label.last_at"), when(entry.last_at, tz)),
                (t("label.correlation_ids"), ", ".join(entry.correlation_ids) or None),
            ]
        )
        if entry.reported:
            body.paragraph(
                t(
                    "digest.reported",
                    reported=number(entry.reported),
                    unreported=number(entry.unreported),
                )
            )
    body.paragraph(t("digest.footer"))
    return _done(subject, body)


# --------------------------------------------------------------------------- handoff mail


def customer_name(customer: Identity, texts: Texts) -> str:
    if customer.name and customer.phone:
        return f"{customer.name} ({customer.phone})"
    return customer.name or customer.phone or customer.user_id or texts.get("unknown_customer")


def _transcript_lines(lines: Sequence[TranscriptLine], texts: Texts, tz: tzinfo) -> list[str]:
    return [
        f"[{line.at.astimezone(tz).strftime('%d/%m %H:%M')}] "
        f"{texts.get('author.' + line.author)}: {line.text}"
        for line in lines
    ]


def render_unattended(
    event: HandoffUnattended, profile: CompanyProfile, texts: Texts, tz: tzinfo
) -> Rendered:
    t = texts.for_profile(profile).get
    values = {
        "company": profile.name,
        "case_code": event.case_code,
        "customer": customer_name(event.customer, texts.for_profile(profile)),
    }
    subject = t(f"handoff.{event.reason}.subject", **values)
    body = _Body().paragraph(t(f"handoff.{event.reason}.intro", **values))
    body.table(
        [
            (t("label.customer"), event.customer.name),
            (t("label.phone"), event.customer.phone or event.customer.user_id),
            (t("label.case_code"), event.case_code),
            (t("label.requested_at"), when(event.occurred_at, tz)),
        ]
    )
    body.paragraph(t("handoff.action"))
    if event.last_messages:
        body.heading(t("handoff.last_messages"))
        body.lines(_transcript_lines(event.last_messages, texts.for_profile(profile), tz))
    body.paragraph(t("signature"))
    return _done(subject, body)


def render_transcript(
    event: HandoffClosed, profile: CompanyProfile, texts: Texts, tz: tzinfo
) -> Rendered:
    mine = texts.for_profile(profile)
    t = mine.get
    values = {
        "company": profile.name,
        "case_code": event.case_code,
        "customer": customer_name(event.customer, mine),
    }
    subject = t("transcript.subject", **values)
    body = _Body().paragraph(t("transcript.intro", **values))
    body.table(
        [
            (t("label.customer"), event.customer.name),
            (t("label.phone"), event.customer.phone or event.customer.user_id),
            (t("label.case_code"), event.case_code),
            (t("label.agent"), event.agent_phone),
            (t("label.end_reason"), t(f"end_reason.{event.end_reason}")),
            (t("label.last_at"), when(event.occurred_at, tz)),
        ]
    )
    lines = _transcript_lines(event.transcript, mine, tz)
    body.lines(lines or [t("transcript.empty")])
    body.paragraph(t("signature"))
    return _done(subject, body)
