"""`POST /<WABA_ID>/message_templates`: Meta's checks on a new template, and the template made.

Meta answers a bad template with code 100, an `error_subcode` for the template rules it names
(2388040 a text too long, 2388073 a footer with variables, 2388299 a variable at the start or end
of the body, 2388024 the name already exists in that language) and a human `error_user_msg`.
"""

from __future__ import annotations

import re
from typing import Any, cast, get_args

from sandbox.errors import GraphError
from sandbox.fields import array, key, not_one_of, string
from sandbox.templates import ButtonType, Category, Template, TemplateButton, TemplateRegistry

NAME_PATTERN = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(?:_[A-Z]{2,4})?$")
CATEGORIES: tuple[str, ...] = get_args(Category)
COMPONENT_TYPES = ("HEADER", "BODY", "FOOTER", "BUTTONS")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
BUTTON_TYPES = tuple(t.upper() for t in get_args(ButtonType))
BODY_MAX = 1024
HEADER_MAX = 60
FOOTER_MAX = 60
BUTTON_TEXT_MAX = 25
BUTTONS_MAX = 10
_VARIABLE = re.compile(r"\{\{\s*(\d+)\s*\}\}")
# Text around the body's variables that does not count as text (Meta ignores punctuation).
_EDGE = r"[\s.,;:!?¡¿()\"'\-–—]*"


def rule_error(subcode: int | None, title: str, message: str) -> GraphError:
    """Meta's answer to a template that breaks a rule: 100, the rule's subcode, the human text."""
    return GraphError(
        100,
        message,
        message="Invalid parameter",
        subcode=subcode,
        user_title=title,
        user_msg=message,
    )


def new_template(body: Any, registry: TemplateRegistry, template_id: str) -> tuple[Template, bool]:
    """The PENDING template a creation request asks for, and whether review will reject it
    (variables side by side: Meta accepts the request, then rejects it as INVALID_FORMAT)."""
    if not isinstance(body, dict):
        raise GraphError(100, "The request body must be a JSON object.")
    name = string(body, "name", "name")
    if not NAME_PATTERN.match(name):
        raise rule_error(
            None,
            "Invalid template name",
            f"Message template name {name!r} can only contain lowercase alphanumeric characters "
            "and underscores ( _ ), up to 512 of them.",
        )
    language = string(body, "language", "language")
    if not LANGUAGE_PATTERN.match(language):
        raise rule_error(None, "Invalid language", f"{language!r} is not a language code.")
    category = str(string(body, "category", "category")).upper()
    if category not in CATEGORIES:
        raise not_one_of("category", CATEGORIES, body["category"])
    if registry.get(name, language) is not None:
        raise rule_error(
            2388024,
            "Content in This Language Already Exists",
            f"There is already {language} content for this template ({name}). You can create a "
            "new template and try again.",
        )
    parts = _components(array(body, "components", "components"))
    if "BODY" not in parts and category != "AUTHENTICATION":
        raise rule_error(None, "Body required", "A template needs a BODY component.")
    template = Template(
        name=name,
        language=language,
        category=cast(Category, category),
        status="PENDING",
        quality_score="UNKNOWN",
        id=template_id,
        components=tuple(parts.values()),
        **_texts(parts),
    )
    adjacent = re.search(r"\}\}\s*\{\{", template.body) is not None
    return template, adjacent


def _components(components: list[Any]) -> dict[str, dict[str, Any]]:
    """The components by type (uppercase), each checked; one of each type at most."""
    found: dict[str, dict[str, Any]] = {}
    for i, component in enumerate(components):
        path = key("components", i)
        if not isinstance(component, dict):
            raise GraphError(100, f"Param {path} must be a JSON object.")
        kind = str(string(component, "type", key(path, "type"))).upper()
        if kind not in COMPONENT_TYPES:
            raise not_one_of(key(path, "type"), COMPONENT_TYPES, component["type"])
        if kind in found:
            raise GraphError(100, f"Param {path}: only one {kind} component is allowed.")
        checked = {**component, "type": kind}
        if kind == "HEADER":
            _header(checked, path)
        elif kind == "BODY":
            _body(checked, path)
        elif kind == "FOOTER":
            _footer(checked, path)
        else:
            _buttons(checked, path)
        found[kind] = checked
    return found


def _variables(text: str) -> list[int]:
    return sorted({int(n) for n in _VARIABLE.findall(text)})


def _check_variables(text: str, where: str) -> int:
    """The number of `{{n}}` variables, which must run 1, 2, ... without gaps."""
    numbers = _variables(text)
    if numbers != list(range(1, len(numbers) + 1)):
        raise rule_error(
            None,
            "Invalid variables",
            f"The {where}'s variables must be {{{{1}}}}, {{{{2}}}}, ... in order, got {numbers}.",
        )
    return len(numbers)


def _too_long(text: str, where: str, limit: int) -> None:
    if len(text) > limit:
        raise rule_error(
            2388040,
            "Character limit exceeded",
            f"The {where} has {len(text)} characters; the limit is {limit}.",
        )


def _examples(component: dict[str, Any], field: str, count: int, where: str) -> list[Any]:
    example = component.get("example")
    values = example.get(field) if isinstance(example, dict) else None
    if field == "body_text" and isinstance(values, list) and values:
        values = values[0]
    if not isinstance(values, list) or len(values) != count:
        raise rule_error(
            None,
            "Sample values missing",
            f"The {where} has {count} variable(s): add as many sample values in example.{field}.",
        )
    return values


def _header(component: dict[str, Any], path: str) -> None:
    fmt = str(component.get("format", "")).upper()
    if fmt not in HEADER_FORMATS:
        raise not_one_of(key(path, "format"), HEADER_FORMATS, component.get("format"))
    component["format"] = fmt
    if fmt == "TEXT":
        text = string(component, "text", key(path, "text"))
        _too_long(text, "header", HEADER_MAX)
        count = _check_variables(text, "header")
        if count > 1:
            raise rule_error(
                2388047, "Header format incorrect", "A header has one variable at most."
            )
        if count:
            _examples(component, "header_text", 1, "header")
    elif fmt != "LOCATION":
        _examples(component, "header_handle", 1, f"{fmt.lower()} header")


def _body(component: dict[str, Any], path: str) -> None:
    if "text" not in component and component.get("add_security_recommendation") is not None:
        return  # an authentication template's body: Meta writes the text
    text = string(component, "text", key(path, "text"))
    _too_long(text, "body", BODY_MAX)
    count = _check_variables(text, "body")
    if count:
        if re.match(_EDGE + r"\{\{", text) or re.search(r"\}\}" + _EDGE + "$", text):
            raise rule_error(
                2388299,
                "Variables can't be at the start or end of the template",
                "Variables can't be at the start or end of the template.",
            )
        _examples(component, "body_text", count, "body")


def _footer(component: dict[str, Any], path: str) -> None:
    if "code_expiration_minutes" in component and "text" not in component:
        return  # an authentication template's footer
    text = string(component, "text", key(path, "text"))
    _too_long(text, "footer", FOOTER_MAX)
    if _variables(text):
        raise rule_error(2388073, "Footer format incorrect", "A footer can't have variables.")


def _buttons(component: dict[str, Any], path: str) -> None:
    buttons = array(component, "buttons", key(path, "buttons"))
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise rule_error(None, "Invalid buttons", f"Give 1 to {BUTTONS_MAX} buttons.")
    for i, button in enumerate(buttons):
        at = key(key(path, "buttons"), i)
        if not isinstance(button, dict):
            raise GraphError(100, f"Param {at} must be a JSON object.")
        kind = str(string(button, "type", key(at, "type"))).upper()
        if kind not in BUTTON_TYPES:
            raise not_one_of(key(at, "type"), BUTTON_TYPES, button["type"])
        if kind in ("OTP", "REQUEST_CONTACT_INFO"):
            continue  # their labels are Meta's
        _too_long(string(button, "text", key(at, "text")), "button text", BUTTON_TEXT_MAX)
        if kind == "URL" and _variables(string(button, "url", key(at, "url"))):
            example = button.get("example")
            if not isinstance(example, list) or len(example) != 1:
                raise rule_error(
                    None, "Sample values missing", "A URL button's variable needs an example."
                )
        if kind == "PHONE_NUMBER":
            string(button, "phone_number", key(at, "phone_number"))


def _texts(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fields a send is checked against: header, body, footer, buttons."""
    header = parts.get("HEADER")
    texts: dict[str, Any] = {"body": str(parts.get("BODY", {}).get("text", ""))}
    if header is not None:
        if header["format"] == "TEXT":
            texts["header"] = header["text"]
            texts["header_params"] = len(_variables(header["text"]))
        elif header["format"] != "LOCATION":
            texts["header_params"] = 1
    if "FOOTER" in parts and "text" in parts["FOOTER"]:
        texts["footer"] = parts["FOOTER"]["text"]
    buttons = parts.get("BUTTONS", {}).get("buttons", [])
    texts["buttons"] = tuple(
        TemplateButton.model_validate({"type": str(b["type"]).lower(), "text": b.get("text", "")})
        for b in buttons
    )
    return texts
