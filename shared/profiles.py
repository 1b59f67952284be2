"""Company profiles: per WhatsApp business number, who the company is and what it says.

Loaded from the YAML (or JSON) file named by ``COMPANY_PROFILES_FILE``; without one, a built-in
demo profile serves every number (good for ``make run``). Texts that customers and agents read
live here, in Spanish (Río de la Plata) by default, so a business changes them without code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ProfileError(Exception):
    pass


class MenuOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    # What choosing it does: "handoff" asks for a human; "reply" answers with ``reply``.
    action: str = "reply"
    reply: str | None = None
    description: str | None = None


class Menu(BaseModel):
    model_config = ConfigDict(extra="forbid")

    header: str | None = None
    body: str = "¡Hola! Soy el asistente virtual. ¿En qué te puedo ayudar?"
    footer: str | None = None
    # Up to three options become reply buttons; more become a list behind ``list_button``.
    list_button: str = "Ver opciones"
    options: list[MenuOption] = Field(
        default_factory=lambda: [
            MenuOption(id="info", title="Información", reply="Visitá nuestra web para más info."),
            MenuOption(id="horarios", title="Horarios", reply="Atendemos de lunes a viernes."),
            MenuOption(id="humano", title="Hablar con un humano", action="handoff"),
        ]
    )


class TemplateButtonDefinition(BaseModel):
    """A button of a template, as Meta's template API takes it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["QUICK_REPLY", "URL", "PHONE_NUMBER"] = "QUICK_REPLY"
    text: str
    url: str | None = None  # URL buttons
    phone_number: str | None = None  # PHONE_NUMBER buttons


class TemplateDefinition(BaseModel):
    """A message template the business needs at Meta: what ``python -m sender templates sync``
    creates when Meta lacks it, and what the sender checks at start-up. ``{{1}}``, ``{{2}}``...
    are the parameters a send fills in; Meta wants an example of each (``body_examples``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    language: str = "es_AR"
    category: Literal["UTILITY", "MARKETING", "AUTHENTICATION"] = "UTILITY"
    header: str | None = None
    body: str
    body_examples: list[str] = Field(default_factory=list)
    footer: str | None = None
    buttons: list[TemplateButtonDefinition] = Field(default_factory=list)


def default_templates() -> list[TemplateDefinition]:
    """The templates handoff sends (its options' defaults): the agent's alert of a customer
    waiting (two parameters, a quick reply that claims the case) and a customer's re-engagement
    (their name)."""
    return [
        TemplateDefinition(
            name="handoff_agent_alert",
            body=(
                "Un cliente pide hablar con una persona: {{1}}. Último mensaje: {{2}}. "
                "Tocá Atender para tomar el caso."
            ),
            body_examples=["#1024 Juan Pérez (+5491135722871)", "Hola, quiero hablar con alguien"],
            buttons=[TemplateButtonDefinition(text="Atender")],
        ),
        TemplateDefinition(
            name="reengage_customer",
            body="Hola {{1}}, ¿seguimos con tu consulta? Respondé este mensaje para continuar.",
            body_examples=["Ana"],
        ),
    ]


class CompanyProfile(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = "default"
    name: str = "Mensajero Demo"
    # The WhatsApp number(s) this profile serves; empty: the fallback for any number.
    phone_number_ids: list[str] = Field(default_factory=list)
    email_bot: str = "notificaciones.chatbot@gmail.com"
    notification_emails: list[str] = Field(default_factory=list)
    reply_to: str | None = None
    agents: list[str] = Field(default_factory=list)  # empty: AGENT_WHATSAPP_NUMBER
    timezone: str = "America/Argentina/Buenos_Aires"
    menu: Menu = Field(default_factory=Menu)
    handoff_phrases: list[str] = Field(
        default_factory=lambda: [
            "humano",
            "persona",
            "agente",
            "asesor",
            "operador",
            "hablar con alguien",
        ]
    )
    texts: dict[str, str] = Field(default_factory=dict)
    # The message templates the business needs at Meta (``python -m sender templates sync``
    # creates the missing ones); by default the ones handoff sends.
    templates: list[TemplateDefinition] = Field(default_factory=default_templates)
    # Free-form sections owned by one service (business hours, timers, ...).
    settings: dict[str, Any] = Field(default_factory=dict)

    def text(self, key: str, default: str, **values: Any) -> str:
        """A configured text (or its default), with ``{placeholders}`` filled in."""
        template = self.texts.get(key, default)
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template


class Profiles(BaseModel):
    profiles: list[CompanyProfile] = Field(default_factory=lambda: [CompanyProfile()])

    def for_number(self, phone_number_id: str | None) -> CompanyProfile:
        fallback: CompanyProfile | None = None
        for profile in self.profiles:
            if phone_number_id and phone_number_id in profile.phone_number_ids:
                return profile
            if not profile.phone_number_ids and fallback is None:
                fallback = profile
        return fallback or self.profiles[0]

    def by_id(self, profile_id: str | None) -> CompanyProfile:
        for profile in self.profiles:
            if profile.id == profile_id:
                return profile
        return self.profiles[0]


def load_profiles(path: str | None) -> Profiles:
    """Read ``COMPANY_PROFILES_FILE``; errors name the file and the field."""
    if not path:
        return Profiles()
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except OSError as error:
        raise ProfileError(f"COMPANY_PROFILES_FILE {path}: {error.strerror}") from error
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ProfileError(f"COMPANY_PROFILES_FILE {path} is not valid: {error}") from error
    if isinstance(data, list):
        data = {"profiles": data}
    try:
        profiles = Profiles.model_validate(data or {})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProfileError(f"COMPANY_PROFILES_FILE {path}: {where}: {first['msg']}") from error
    if not profiles.profiles:
        raise ProfileError(f"COMPANY_PROFILES_FILE {path} defines no profile")
    return profiles
