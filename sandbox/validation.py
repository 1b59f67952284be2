"""Pure validation of `POST /messages` bodies against Meta's rules.

`validate_request` returns what was asked (a send or a read receipt) or raises the `GraphError`
Meta would answer: code 100 for a missing, mistyped or misspelled parameter, 131009 for a value
outside WhatsApp's limits, 132001/132000 for template problems. Details always name the field
the way Meta does (`interactive['action']['buttons'][0]['reply']['title']`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import GraphError, invalid_param, invalid_value
from sandbox.fields import array, http_url, key, not_one_of, number, obj, string
from sandbox.interactive import validate_interactive
from sandbox.people import is_bsuid
from sandbox.templates import Template, TemplateRegistry
from shared.meta_limits import (
    CAPTION_MAX,
    OPAQUE_DATA_MAX,
    TEXT_BODY_MAX,
)
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
_COMPONENT_TYPES = ("header", "body", "button", "footer", "carousel", "limited_time_offer")


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """The approved template a send uses, with the values it fills in."""

    template: Template
    body_params: tuple[str, ...] = ()
    payloads: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A valid message send, addressed by phone (`to`) or by business-scoped user id."""

    to: str | None
    input: str
    type: str
    body: dict[str, Any]
    context_id: str | None = None
    biz_opaque_callback_data: str | None = None
    template: TemplateUse | None = None
    # The BSUID or parent BSUID of `recipient`, when there is no `to` (which takes precedence).
    recipient: str | None = None

    @property
    def address(self) -> str:
        """The identifier the send names its recipient by."""
        address = self.to or self.recipient
        assert address is not None
        return address


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
        raise not_one_of("messaging_product", ("whatsapp",), product)
    if "status" in body:
        return _read_receipt(body)
    return _send(body, templates)


def _read_receipt(body: dict[str, Any]) -> ReadReceipt:
    if body["status"] != "read":
        raise not_one_of("status", ("read",), body["status"])
    message_id = string(body, "message_id", "message_id")
    typing = obj(body, "typing_indicator", "typing_indicator", required=False)
    if typing is not None and typing.get("type") != "text":
        raise not_one_of("typing_indicator['type']", ("text",), typing.get("type"))
    return ReadReceipt(message_id=message_id, typing_indicator=typing is not None)


def _send(body: dict[str, Any], templates: TemplateRegistry) -> SendRequest:
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise not_one_of("recipient_type", ("individual",), recipient_type)
    to, recipient, given = _recipient(body)

    kind = body.get("type", "text")
    if kind not in MESSAGE_TYPES:
        raise not_one_of("type", MESSAGE_TYPES, kind)

    context_id = None
    context = obj(body, "context", "context", required=False)
    if context is not None:
        context_id = string(context, "message_id", "context['message_id']")
    opaque_key = "biz_opaque_callback_data"
    opaque = string(body, opaque_key, opaque_key, required=False, max_len=OPAQUE_DATA_MAX)

    template_use = None
    if kind == "text":
        _text(body)
    elif kind in MEDIA_TYPES:
        _media(body, kind)
    elif kind == "interactive":
        validate_interactive(body)
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
        recipient=recipient,
        input=given,
        type=kind,
        body=body,
        context_id=context_id,
        biz_opaque_callback_data=opaque,
        template=template_use,
    )


def _recipient(body: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """`to` (a phone) or `recipient` (a BSUID or parent BSUID); with both, `to` wins, as Meta's
    business-scoped user ids page says. Returns (phone, BSUID, the identifier as given)."""
    raw_to = body.get("to")
    raw_recipient = body.get("recipient")
    if raw_to is None and raw_recipient is None:
        raise invalid_param("The parameter to or recipient is required.")
    if raw_recipient is not None and not isinstance(raw_recipient, str):
        raise invalid_param("Param recipient must be a string.")
    if raw_to is None:
        assert isinstance(raw_recipient, str)
        if not is_bsuid(raw_recipient):
            raise invalid_param(
                "Param recipient must be a business-scoped user ID (BSUID) or a parent BSUID "
                f'- got "{raw_recipient}".'
            )
        return None, raw_recipient, raw_recipient
    if not isinstance(raw_to, str):
        raise invalid_param("Param to must be a string.")
    to = maybe_e164(raw_to)
    if to is None:
        raise invalid_param(f'Param to must be a valid phone number - got "{raw_to}".')
    return to, None, raw_to


# --- message kinds -----------------------------------------------------------------------


def _text(body: dict[str, Any]) -> None:
    text = obj(body, "text", "text")
    string(text, "body", "text['body']", max_len=TEXT_BODY_MAX)
    preview = text.get("preview_url")
    if preview is not None and not isinstance(preview, bool):
        raise invalid_param("Param text['preview_url'] must be a boolean.")


def _media(body: dict[str, Any], kind: str) -> None:
    media = obj(body, kind, kind)
    media_id = string(media, "id", key(kind, "id"), required=False)
    link = string(media, "link", key(kind, "link"), required=False)
    if (media_id is None) == (link is None):
        raise invalid_param(
            f"Param {kind} must have exactly one of {kind}['id'] or {kind}['link']."
        )
    if link is not None:
        http_url(link, key(kind, "link"))
    if kind in ("image", "video", "document"):
        string(media, "caption", key(kind, "caption"), required=False, max_len=CAPTION_MAX)
    elif "caption" in media:
        raise invalid_param(f"Param {kind}['caption'] is not supported for {kind} messages.")
    if kind == "document":
        string(media, "filename", "document['filename']", required=False, max_len=240)


def _location(body: dict[str, Any]) -> None:
    location = obj(body, "location", "location")
    number(location, "latitude", "location['latitude']", 90)
    number(location, "longitude", "location['longitude']", 180)
    string(location, "name", "location['name']", required=False, max_len=1000)
    string(location, "address", "location['address']", required=False, max_len=1000)


def _contacts(body: dict[str, Any]) -> None:
    contacts = array(body, "contacts", "contacts")
    if not contacts:
        raise invalid_param("Param contacts must have at least 1 element.")
    for i, contact in enumerate(contacts):
        path = key("contacts", i)
        if not isinstance(contact, dict):
            raise invalid_param(f"Param {path} must be a JSON object.")
        name = obj(contact, "name", key(path, "name"))
        string(name, "formatted_name", key(key(path, "name"), "formatted_name"))


def _reaction(body: dict[str, Any]) -> None:
    reaction = obj(body, "reaction", "reaction")
    string(reaction, "message_id", "reaction['message_id']")
    string(reaction, "emoji", "reaction['emoji']", allow_empty=True)


def _template(body: dict[str, Any], templates: TemplateRegistry) -> TemplateUse:
    template = obj(body, "template", "template")
    name = string(template, "name", "template['name']")
    language = obj(template, "language", "template['language']")
    code = string(language, "code", "template['language']['code']")
    components = template.get("components", [])
    if not isinstance(components, list):
        raise invalid_param("Param template['components'] must be an array.")

    approved = templates.get(name, code)
    if approved is None:
        raise GraphError(132001, f"template name ({name}) does not exist in {code}")
    _check_sendable(approved)

    header_count = 0
    body_params: list[str] = []
    payloads: dict[int, str] = {}
    for i, component in enumerate(components):
        path = key("template['components']", i)
        if not isinstance(component, dict):
            raise invalid_param(f"Param {path} must be a JSON object.")
        kind = component.get("type")
        if kind not in _COMPONENT_TYPES:
            raise not_one_of(f"{path}['type']", _COMPONENT_TYPES, kind)
        params = component.get("parameters", [])
        if not isinstance(params, list):
            raise invalid_param(f"Param {path}['parameters'] must be an array.")
        for p, param in enumerate(params):
            _template_param(param, key(key(path, "parameters"), p))
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


def _check_sendable(template: Template) -> None:
    """Only an APPROVED template is sent: 132015 paused, 132016 disabled, else 132001."""
    if template.status == "APPROVED":
        return
    if template.status == "PAUSED":
        raise GraphError(132015)
    if template.status == "DISABLED":
        raise GraphError(132016)
    raise GraphError(
        132001,
        f"template name ({template.name}) in {template.language} is {template.status}, "
        "not APPROVED",
    )


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
