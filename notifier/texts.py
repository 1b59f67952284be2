"""The mail texts by key, Spanish (Río de la Plata) by default, and how values are written.

Every text has a key; a business overrides it in ``EMAIL_TEXTS_FILE`` (all mail) or in its
company profile's ``texts`` under ``email.<key>`` (that profile's mail). Texts take
``{placeholders}``; values are escaped in the HTML body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from notifier.alert_texts import ALERT_TEXTS
from shared.profiles import CompanyProfile

MAIL_TEXTS: dict[str, str] = {
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
    "label.username": "Usuario de WhatsApp",
    "label.user_id": "ID de WhatsApp (BSUID)",
    "label.case_code": "Caso",
    "label.requested_at": "Fecha",
    "label.agent": "Agente",
    "label.end_reason": "Cómo terminó",
    "label.handlers": "Lo atendieron",
    "label.rating": "Calificación del cliente",
    "rating.value": "{label} ({score} de 3)",
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
DEFAULT_TEXTS: dict[str, str] = {**MAIL_TEXTS, **ALERT_TEXTS}


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

    def fill(self, key: str, values: Mapping[str, str]) -> str:
        """The text with ``values``; a placeholder without a value reads as ``unknown``."""
        template = self._overrides.get(key, DEFAULT_TEXTS.get(key, key))
        try:
            return template.format_map(_OrUnknown(values, self.get("unknown")))
        except (IndexError, ValueError):
            return template

    def name(self, family: str, code: str) -> str:
        """Meta's ``code`` in words (the text ``<family>.<code>``), or the code as Meta sent it."""
        key = f"{family}.{code}"
        return self.get(key) if key in self._overrides or key in DEFAULT_TEXTS else code

    def times(self, n: int) -> str:
        """'1 vez', '1.000 veces'."""
        return self.get("times.one" if n == 1 else "times.other", count=number(n))

    def for_profile(self, profile: CompanyProfile) -> Texts:
        """These texts with the profile's ``email.<key>`` texts on top."""
        mine = {
            k.removeprefix("email."): v for k, v in profile.texts.items() if k.startswith("email.")
        }
        return Texts({**self._overrides, **mine})


class _OrUnknown(dict[str, str]):
    def __init__(self, values: Mapping[str, str], unknown: str) -> None:
        super().__init__(values)
        self.unknown = unknown

    def __missing__(self, key: str) -> str:
        return self.unknown


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
