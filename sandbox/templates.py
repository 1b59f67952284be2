"""Approved message templates: the built-in set, or a YAML/JSON file (SANDBOX_TEMPLATES)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")


class TemplateButton(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["quick_reply", "url", "phone_number", "copy_code", "flow", "catalog", "otp"] = (
        "quick_reply"
    )
    text: str


class Template(BaseModel):
    """One approved template in one language."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    language: str = Field(min_length=1)
    category: Literal["UTILITY", "MARKETING", "AUTHENTICATION"] = "UTILITY"
    header: str | None = None
    header_params: int = Field(default=0, ge=0)
    body: str = ""
    body_params: int | None = Field(default=None, ge=0)
    footer: str | None = None
    buttons: tuple[TemplateButton, ...] = ()

    @property
    def expected_body_params(self) -> int:
        """Declared, or counted from the `{{n}}` placeholders of the body."""
        if self.body_params is not None:
            return self.body_params
        return len(set(_PLACEHOLDER.findall(self.body)))

    def render_body(self, params: Sequence[str]) -> str:
        """The body with `{{n}}` replaced by the n-th parameter, for previews."""

        def fill(match: re.Match[str]) -> str:
            index = int(match.group(1)) - 1
            return params[index] if 0 <= index < len(params) else match.group(0)

        return _PLACEHOLDER.sub(fill, self.body)


class _TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    templates: list[Template]


DEFAULT_TEMPLATES: tuple[Template, ...] = (
    Template(
        name="hello_world",
        language="en_US",
        header="Hello World",
        body=(
            "Welcome and congratulations!! This message demonstrates your ability to send a "
            "WhatsApp message notification from the Cloud API, hosted by Meta. Thank you for "
            "taking the time to test with us."
        ),
        footer="WhatsApp Business Platform sample message",
    ),
    Template(
        name="handoff_agent_alert",
        language="es_AR",
        body="Un cliente pide hablar con una persona: {{1}}. Último mensaje: {{2}}",
        buttons=(TemplateButton(text="Atender"),),
    ),
    Template(
        name="reengage_customer",
        language="es_AR",
        body="Hola {{1}}, ¿seguimos con tu consulta? Respondé este mensaje para continuar.",
    ),
)


class TemplateRegistry:
    """Lookup by (name, language code)."""

    def __init__(self, templates: Iterable[Template]) -> None:
        self._by_key = {(t.name, t.language): t for t in templates}

    def get(self, name: str, language: str) -> Template | None:
        return self._by_key.get((name, language))

    def all(self) -> list[Template]:
        return list(self._by_key.values())


def load_templates(path: str | None) -> TemplateRegistry:
    """The templates of a YAML/JSON file (a list, or `{"templates": [...]}`), or the defaults."""
    if not path:
        return TemplateRegistry(DEFAULT_TEMPLATES)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, list):
        templates = TypeAdapter(list[Template]).validate_python(data)
    else:
        templates = _TemplateFile.model_validate(data).templates
    return TemplateRegistry(templates)
