"""Message templates: the built-in set or a YAML/JSON file (SANDBOX_TEMPLATES), plus created ones.

Each template has Meta's category, status and quality score. Only an APPROVED template can be
sent; the registry changes status, quality and category as Meta would (and the callers post the
matching webhook).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")

Category = Literal["UTILITY", "MARKETING", "AUTHENTICATION"]
# Meta's template statuses (message_template_status_update webhook reference).
Status = Literal[
    "APPROVED",
    "ARCHIVED",
    "DELETED",
    "DISABLED",
    "FLAGGED",
    "IN_APPEAL",
    "LIMIT_EXCEEDED",
    "LOCKED",
    "PAUSED",
    "PENDING",
    "PENDING_DELETION",
    "REINSTATED",
    "REJECTED",
    "UNARCHIVED",
]
STATUSES: tuple[str, ...] = get_args(Status)
Quality = Literal["GREEN", "YELLOW", "RED", "UNKNOWN"]
ButtonType = Literal[
    "quick_reply",
    "url",
    "phone_number",
    "copy_code",
    "flow",
    "catalog",
    "otp",
    "mpm",
    "spm",
    "voice_call",
    "request_contact_info",
]


class TemplateButton(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ButtonType = "quick_reply"
    text: str


class Template(BaseModel):
    """One template in one language."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    language: str = Field(min_length=1)
    category: Category = "UTILITY"
    status: Status = "APPROVED"
    quality_score: Quality = "GREEN"
    # Meta's numeric template id; derived from name and language when the file leaves it out.
    id: str | None = None
    rejected_reason: str | None = None
    previous_category: Category | None = None
    header: str | None = None
    header_params: int = Field(default=0, ge=0)
    body: str = ""
    body_params: int | None = Field(default=None, ge=0)
    footer: str | None = None
    buttons: tuple[TemplateButton, ...] = ()
    # The components as created through the API (with their examples), returned as given.
    components: tuple[dict[str, Any], ...] | None = None

    @property
    def template_id(self) -> str:
        if self.id:
            return self.id
        digest = hashlib.sha256(f"{self.name}:{self.language}".encode()).hexdigest()
        return str(10**15 + int(digest[:12], 16) % (9 * 10**15))

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

    def graph_components(self) -> list[dict[str, Any]]:
        """The components as `GET message_templates` lists them."""
        if self.components is not None:
            return [dict(c) for c in self.components]
        found: list[dict[str, Any]] = []
        if self.header is not None:
            found.append({"type": "HEADER", "format": "TEXT", "text": self.header})
        elif self.header_params:
            found.append({"type": "HEADER", "format": "IMAGE"})
        found.append({"type": "BODY", "text": self.body})
        if self.footer is not None:
            found.append({"type": "FOOTER", "text": self.footer})
        if self.buttons:
            buttons = [{"type": b.type.upper(), "text": b.text} for b in self.buttons]
            found.append({"type": "BUTTONS", "buttons": buttons})
        return found


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
    """Lookup by (name, language code) or by id; `reset()` brings back the initial set."""

    def __init__(self, templates: Iterable[Template]) -> None:
        self._initial = tuple(templates)
        self.reset()

    def reset(self) -> None:
        self._by_key = {(t.name, t.language): t for t in self._initial}

    def get(self, name: str, language: str) -> Template | None:
        return self._by_key.get((name, language))

    def all(self) -> list[Template]:
        return list(self._by_key.values())

    def add(self, template: Template) -> Template:
        self._by_key[(template.name, template.language)] = template
        return template

    def update(self, template: Template, **changes: Any) -> Template:
        """The template with these fields changed (the registry keeps the new version)."""
        changed = template.model_copy(update=changes)
        self._by_key[(template.name, template.language)] = changed
        return changed


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
