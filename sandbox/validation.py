"""Pure validation of `POST /messages` bodies against Meta's rules.

`validate_request` returns what was asked (a send or a read receipt) or raises the `GraphError`
Meta would answer: code 100 for a missing, mistyped or misspelled parameter, 131009 for a value
outside WhatsApp's limits, 132001/132000 for template problems. Details always name the field
the way Meta does (`interactive['action']['buttons'][0]['reply']['title']`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sandbox.errors import GraphError, invalid_param, invalid_value
from sandbox.templates import Template, TemplateRegistry
from shared.phone import maybe_e164

MEDIA_TYPES = ("audio", "document", "image", "sticker", "video")
MESSAGE_TYPES = (
    "audio",
    "contacts",
    "document",
    "image",
    "interactive",
    "location",
    "reaction",
    "sticker",
    "template",
    "text",
    "video",
)
INTERACTIVE_TYPES = (
    "address_message",
    "button",
    "call_permission_request",
    "catalog_message",
    "cta_url",
    "flow",
    "list",
    "location_request_message",
    "order_details",
    "order_status",
    "product",
    "product_list",
    "voice_call",
)
_NO_BODY_NEEDED = ("product", "location_request_message")
_HEADER_TYPES = ("text", "image", "video", "document")
_COMPONENT_TYPES = ("header", "body", "button", "footer", "carousel", "limited_time_offer")

TEXT_BODY_MAX = 4096
CAPTION_MAX = 1024
INTERACTIVE_BODY_MAX = 1024
LIST_BODY_MAX = 4096
HEADER_FOOTER_MAX = 60
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
LIST_BUTTON_MAX = 20
SECTIONS_MAX = 10
ROWS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
SECTION_TITLE_MAX = 24
OPAQUE_DATA_MAX = 512


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """The approved template a send uses, with the values it fills in."""

    template: Template
    body_params: tuple[str, ...] = ()
    payloads: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A valid message send."""

    to: str
    input: str
    type: str
    body: dict[str, Any]
    context_id: str | None = None
    biz_opaque_callback_data: str | None = None
    template: TemplateUse | None = None


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """A valid mark-as-read (optionally with a typing indicator)."""

    message_id: str
    typing_indicator: bool = False


def validate_request(body: Any, templates: TemplateRegistry) -> SendRequest | ReadReceipt:
    """Check a `/messages` body; raise the `GraphError` Meta would answer."""
    if not isinstance(body, dict):
        raise invalid_param("Param body must be a JSON object.")
    product = body.get("messaging_product")
    if product is None:
        raise invalid_param("The parameter messaging_product is required.")
    if product != "whatsapp":
        raise _not_one_of("messaging_product", ("whatsapp",), product)
    if "status" in body:
        return _read_receipt(body)
    return _send(body, templates)


def _read_receipt(body: dict[str, Any]) -> ReadReceipt:
    if body["status"] != "read":
        raise _not_one_of("status", ("read",), body["status"])
    message_id = _string(body, "message_id", "message_id")
    typing = _object(body, "typing_indicator", "typing_indicator", required=False)
    if typing is not None and typing.get("type") != "text":
        raise _not_one_of("typing_indicator['type']", ("text",), typing.get("type"))
    return ReadReceipt(message_id=message_id, typing_indicator=typing is not None)


def _send(body: dict[str, Any], templates: TemplateRegistry) -> SendRequest:
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise _not_one_of("recipient_type", ("individual",), recipient_type)
    raw_to = body.get("to")
    if raw_to is None:
        raise invalid_param("The parameter to is required.")
    if not isinstance(raw_to, str):
        raise invalid_param("Param to must be a string.")
    to = maybe_e164(raw_to)
    if to is None:
        raise invalid_param(f'Param to must be a valid phone number - got "{raw_to}".')

    kind = body.get("type", "text")
    if kind not in MESSAGE_TYPES:
        raise _not_one_of("type", MESSAGE_TYPES, kind)

    context_id = None
    context = _object(body, "context", "context", required=False)
    if context is not None:
        context_id = _string(context, "message_id", "context['message_id']")
    opaque_key = "biz_opaque_callback_data"
    opaque = _string(body, opaque_key, opaque_key, required=False, max_len=OPAQUE_DATA_MAX)

    template_use = None
    if kind == "text":
        _text(body)
    elif kind in MEDIA_TYPES:
        _media(body, kind)
    elif kind == "interactive":
        _interactive(body)
    elif kind == "template":
        template_use = _template(body, templates)
    elif kind == "location":
        _location(body)
    elif kind == "contacts":
        _contacts(body)
    else:
        _reaction(body)
    return SendRequest(
        to=to,
        input=raw_to,
        type=kind,
        body=body,
        context_id=context_id,
        biz_opaque_callback_data=opaque,
        template=template_use,
    )


# --- field helpers -----------------------------------------------------------------------


def _key(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}['{key}']"


def _not_one_of(path: str, allowed: tuple[str, ...], got: Any) -> GraphError:
    choices = ", ".join(value.upper() for value in allowed)
    return invalid_param(f'Param {path} must be one of {{{choices}}} - got "{got}".')


def _object(parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> Any:
    value = parent.get(key)
    if value is None:
        if required:
            raise invalid_param(f"The parameter {path} is required.")
        return None
    if not isinstance(value, dict):
        raise invalid_param(f"Param {path} must be a JSON object.")
    return value


def _list(parent: dict[str, Any], key: str, path: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        raise invalid_param(f"The parameter {path} is required.")
    if not isinstance(value, list):
        raise invalid_param(f"Param {path} must be an array.")
    return value


def _string(
    parent: dict[str, Any],
    key: str,
    path: str,
    *,
    required: bool = True,
    max_len: int | None = None,
    allow_empty: bool = False,
) -> Any:
    value = parent.get(key)
    if value is None:
        if required:
            raise invalid_param(f"The parameter {path} is required.")
        return None
    if not isinstance(value, str):
        raise invalid_param(f"Param {path} must be a string.")
    if not value and not allow_empty:
        raise invalid_param(f"Param {path} must be a non-empty string.")
    if max_len is not None and len(value) > max_len:
        raise invalid_param(f"Param {path} must be at most {max_len} characters long.")
    return value


def _limited(value: str, path: str, what: str, max_len: int) -> None:
    """WhatsApp's own length rules for interactive parts answer 131009."""
    if not 1 <= len(value) <= max_len:
        raise invalid_value(f"{what} length invalid: {path}. Min length: 1, Max length: {max_len}")


def _http_url(value: str, path: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_value(f'Param {path} must be a valid http or https URL - got "{value}".')


def _number(parent: dict[str, Any], key: str, path: str, bound: float) -> None:
    value = parent.get(key)
    if value is None:
        raise invalid_param(f"The parameter {path} is required.")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise invalid_param(f"Param {path} must be a number.") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_param(f"Param {path} must be a number.")
    if not -bound <= value <= bound:
        raise invalid_value(f"Param {path} must be between {-bound:g} and {bound:g}.")


# --- message kinds -----------------------------------------------------------------------


def _text(body: dict[str, Any]) -> None:
    text = _object(body, "text", "text")
    _string(text, "body", "text['body']", max_len=TEXT_BODY_MAX)
    preview = text.get("preview_url")
    if preview is not None and not isinstance(preview, bool):
        raise invalid_param("Param text['preview_url'] must be a boolean.")


def _media(body: dict[str, Any], kind: str) -> None:
    media = _object(body, kind, kind)
    media_id = _string(media, "id", _key(kind, "id"), required=False)
    link = _string(media, "link", _key(kind, "link"), required=False)
    if (media_id is None) == (link is None):
        raise invalid_param(
            f"Param {kind} must have exactly one of {kind}['id'] or {kind}['link']."
        )
    if link is not None:
        _http_url(link, _key(kind, "link"))
    if kind in ("image", "video", "document"):
        _string(media, "caption", _key(kind, "caption"), required=False, max_len=CAPTION_MAX)
    elif "caption" in media:
        raise invalid_param(f"Param {kind}['caption'] is not supported for {kind} messages.")
    if kind == "document":
        _string(media, "filename", "document['filename']", required=False, max_len=240)


def _location(body: dict[str, Any]) -> None:
    location = _object(body, "location", "location")
    _number(location, "latitude", "location['latitude']", 90)
    _number(location, "longitude", "location['longitude']", 180)
    _string(location, "name", "location['name']", required=False, max_len=1000)
    _string(location, "address", "location['address']", required=False, max_len=1000)


def _contacts(body: dict[str, Any]) -> None:
    contacts = _list(body, "contacts", "contacts")
    if not contacts:
        raise invalid_param("Param contacts must have at least 1 element.")
    for i, contact in enumerate(contacts):
        path = _key("contacts", i)
        if not isinstance(contact, dict):
            raise invalid_param(f"Param {path} must be a JSON object.")
        name = _object(contact, "name", _key(path, "name"))
        _string(name, "formatted_name", _key(_key(path, "name"), "formatted_name"))


def _reaction(body: dict[str, Any]) -> None:
    reaction = _object(body, "reaction", "reaction")
    _string(reaction, "message_id", "reaction['message_id']")
    _string(reaction, "emoji", "reaction['emoji']", allow_empty=True)


# --- interactive ---------------------------------------------------------------------------


def _interactive(body: dict[str, Any]) -> None:
    interactive = _object(body, "interactive", "interactive")
    kind = interactive.get("type")
    if kind is None:
        raise invalid_param("The parameter interactive['type'] is required.")
    if kind not in INTERACTIVE_TYPES:
        raise _not_one_of("interactive['type']", INTERACTIVE_TYPES, kind)

    header = _object(interactive, "header", "interactive['header']", required=False)
    if header is not None:
        _header(header)
    body_part = _object(
        interactive, "body", "interactive['body']", required=kind not in _NO_BODY_NEEDED
    )
    if body_part is not None:
        text = _string(body_part, "text", "interactive['body']['text']")
        limit = LIST_BODY_MAX if kind == "list" else INTERACTIVE_BODY_MAX
        _limited(text, "interactive['body']['text']", "Body text", limit)
    footer = _object(interactive, "footer", "interactive['footer']", required=False)
    if footer is not None:
        text = _string(footer, "text", "interactive['footer']['text']")
        _limited(text, "interactive['footer']['text']", "Footer text", HEADER_FOOTER_MAX)

    action = _object(interactive, "action", "interactive['action']")
    if kind == "button":
        _reply_buttons(action)
    elif kind == "list":
        _list_action(action)
    elif kind == "cta_url":
        _cta_url(action)


def _header(header: dict[str, Any]) -> None:
    kind = header.get("type")
    if kind not in _HEADER_TYPES:
        raise _not_one_of("interactive['header']['type']", _HEADER_TYPES, kind)
    if kind == "text":
        text = _string(header, "text", "interactive['header']['text']")
        _limited(text, "interactive['header']['text']", "Header text", HEADER_FOOTER_MAX)
    else:
        media = _object(header, kind, f"interactive['header']['{kind}']")
        path = f"interactive['header']['{kind}']"
        media_id = _string(media, "id", _key(path, "id"), required=False)
        link = _string(media, "link", _key(path, "link"), required=False)
        if (media_id is None) == (link is None):
            raise invalid_param(f"Param {path} must have exactly one of id or link.")
        if link is not None:
            _http_url(link, _key(path, "link"))


def _reply_buttons(action: dict[str, Any]) -> None:
    path = "interactive['action']['buttons']"
    buttons = _list(action, "buttons", path)
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise invalid_value(
            f"Invalid buttons count: {path} has {len(buttons)}. "
            f"Min allowed buttons: 1, Max allowed buttons: {BUTTONS_MAX}"
        )
    ids: set[str] = set()
    titles: set[str] = set()
    for i, button in enumerate(buttons):
        at = _key(path, i)
        if not isinstance(button, dict):
            raise invalid_param(f"Param {at} must be a JSON object.")
        if button.get("type") != "reply":
            raise _not_one_of(f"{at}['type']", ("reply",), button.get("type"))
        reply = _object(button, "reply", _key(at, "reply"))
        button_id = _string(reply, "id", f"{at}['reply']['id']")
        _limited(button_id, f"{at}['reply']['id']", "Button id", BUTTON_ID_MAX)
        title = _string(reply, "title", f"{at}['reply']['title']")
        _limited(title, f"{at}['reply']['title']", "Button title", BUTTON_TITLE_MAX)
        if button_id in ids:
            raise invalid_value(f"Duplicate button id: {at}['reply']['id'] is \"{button_id}\"")
        if title in titles:
            raise invalid_value(f"Duplicate button title: {at}['reply']['title'] is \"{title}\"")
        ids.add(button_id)
        titles.add(title)


def _list_action(action: dict[str, Any]) -> None:
    button = _string(action, "button", "interactive['action']['button']")
    _limited(button, "interactive['action']['button']", "Button label", LIST_BUTTON_MAX)
    path = "interactive['action']['sections']"
    sections = _list(action, "sections", path)
    if not 1 <= len(sections) <= SECTIONS_MAX:
        raise invalid_value(
            f"Invalid sections count: {path} has {len(sections)}. "
            f"Min allowed sections: 1, Max allowed sections: {SECTIONS_MAX}"
        )
    total_rows = 0
    row_ids: set[str] = set()
    for s, section in enumerate(sections):
        at = _key(path, s)
        if not isinstance(section, dict):
            raise invalid_param(f"Param {at} must be a JSON object.")
        title = _string(section, "title", _key(at, "title"), required=False)
        if title is None and len(sections) > 1:
            raise invalid_value(f"Param {at}['title'] is required with more than one section.")
        if title is not None:
            _limited(title, _key(at, "title"), "Section title", SECTION_TITLE_MAX)
        rows = _list(section, "rows", _key(at, "rows"))
        if not rows:
            raise invalid_value(f"Param {at}['rows'] must have at least 1 element.")
        total_rows += len(rows)
        if total_rows > ROWS_MAX:
            raise invalid_value(f"Total row count exceed max allowed count: {ROWS_MAX} ({path}).")
        for r, row in enumerate(rows):
            row_path = _key(_key(at, "rows"), r)
            if not isinstance(row, dict):
                raise invalid_param(f"Param {row_path} must be a JSON object.")
            row_id = _string(row, "id", _key(row_path, "id"))
            _limited(row_id, _key(row_path, "id"), "Row id", ROW_ID_MAX)
            if row_id in row_ids:
                raise invalid_value(f"Duplicate row id: {row_path}['id'] is \"{row_id}\"")
            row_ids.add(row_id)
            row_title = _string(row, "title", _key(row_path, "title"))
            _limited(row_title, _key(row_path, "title"), "Row title", ROW_TITLE_MAX)
            description = _string(row, "description", _key(row_path, "description"), required=False)
            if description is not None and len(description) > ROW_DESCRIPTION_MAX:
                raise invalid_value(
                    f"Row description is too long: {row_path}['description']. "
                    f"Max length: {ROW_DESCRIPTION_MAX}"
                )


def _cta_url(action: dict[str, Any]) -> None:
    name = action.get("name")
    if name != "cta_url":
        raise _not_one_of("interactive['action']['name']", ("cta_url",), name)
    params = _object(action, "parameters", "interactive['action']['parameters']")
    path = "interactive['action']['parameters']"
    display = _string(params, "display_text", _key(path, "display_text"))
    _limited(display, _key(path, "display_text"), "Display text", BUTTON_TITLE_MAX)
    url = _string(params, "url", _key(path, "url"))
    _http_url(url, _key(path, "url"))


# --- templates -----------------------------------------------------------------------------


def _template(body: dict[str, Any], templates: TemplateRegistry) -> TemplateUse:
    template = _object(body, "template", "template")
    name = _string(template, "name", "template['name']")
    language = _object(template, "language", "template['language']")
    code = _string(language, "code", "template['language']['code']")
    components = template.get("components", [])
    if not isinstance(components, list):
        raise invalid_param("Param template['components'] must be an array.")

    approved = templates.get(name, code)
    if approved is None:
        raise GraphError(132001, f"template name ({name}) does not exist in {code}")

    header_count = 0
    body_params: list[str] = []
    payloads: dict[int, str] = {}
    for i, component in enumerate(components):
        path = _key("template['components']", i)
        if not isinstance(component, dict):
            raise invalid_param(f"Param {path} must be a JSON object.")
        kind = component.get("type")
        if kind not in _COMPONENT_TYPES:
            raise _not_one_of(f"{path}['type']", _COMPONENT_TYPES, kind)
        params = component.get("parameters", [])
        if not isinstance(params, list):
            raise invalid_param(f"Param {path}['parameters'] must be an array.")
        for p, param in enumerate(params):
            _template_param(param, _key(_key(path, "parameters"), p))
        if kind == "header":
            header_count += len(params)
        elif kind == "body":
            body_params.extend(_param_text(param) for param in params)
        elif kind == "button":
            index = _button_index(component, path, approved)
            payload = next((p.get("payload") for p in params if p.get("type") == "payload"), None)
            if isinstance(payload, str):
                payloads[index] = payload

    if header_count != approved.header_params:
        raise GraphError(
            132000,
            f"header: number of localizable_params ({header_count}) does not match the "
            f"expected number of params ({approved.header_params})",
        )
    if len(body_params) != approved.expected_body_params:
        raise GraphError(
            132000,
            f"body: number of localizable_params ({len(body_params)}) does not match the "
            f"expected number of params ({approved.expected_body_params})",
        )
    return TemplateUse(template=approved, body_params=tuple(body_params), payloads=payloads)


def _template_param(param: Any, path: str) -> None:
    if not isinstance(param, dict):
        raise invalid_param(f"Param {path} must be a JSON object.")
    kind = param.get("type")
    if not isinstance(kind, str):
        raise invalid_param(f"The parameter {path}['type'] is required.")
    if kind not in param:
        raise invalid_param(f"The parameter {path}['{kind}'] is required.")


def _param_text(param: dict[str, Any]) -> str:
    value = param.get(param["type"])
    if isinstance(value, dict):
        return str(value.get("fallback_value", ""))
    return str(value)


def _button_index(component: dict[str, Any], path: str, approved: Template) -> int:
    if "sub_type" not in component:
        raise invalid_param(f"The parameter {path}['sub_type'] is required.")
    raw = component.get("index")
    if raw is None:
        raise invalid_param(f"The parameter {path}['index'] is required.")
    try:
        index = int(raw)
    except (TypeError, ValueError):
        raise invalid_param(f"Param {path}['index'] must be an integer.") from None
    if approved.buttons and not 0 <= index < len(approved.buttons):
        raise invalid_value(
            f"Param {path}['index']: button at index {index} does not exist in template "
            f"{approved.name}"
        )
    return index
