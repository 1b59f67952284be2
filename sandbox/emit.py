"""`POST /_sandbox/webhooks/emit`: any webhook Meta sends, on request, signed and posted now.

The body names Meta's webhook `field` (and, for `messages`, the message `type`); the other keys
are that kind's options, each with a realistic default. `{"field": ..., "raw": {...}}` posts
any value as it is, for fields the sandbox does not model. The answer is the delivery (and the
ids it made): `{"field", "delivery_id", "gateway_status", "error"?, "payload", ...}`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from sandbox import signals_account as account
from sandbox import signals_calls as calls
from sandbox import signals_customer as customer
from sandbox.graph import json_response
from sandbox.keys import STATE_KEY
from sandbox.payloads import account_envelope
from sandbox.signals_customer import Built
from sandbox.state import SandboxState

log = logging.getLogger("sandbox.emit")

Builder = Callable[[SandboxState, Any], Built]

# Meta's webhook field -> the options model and the builder.
FIELDS: dict[str, tuple[type[BaseModel], Builder]] = {
    "smb_message_echoes": (customer.EchoSignal, customer.smb_message_echo),
    "history": (customer.HistorySignal, customer.history),
    "smb_app_state_sync": (customer.StateSyncSignal, customer.smb_app_state_sync),
    "user_preferences": (customer.PreferenceSignal, customer.user_preferences),
    "user_id_update": (customer.UserIdChangeSignal, customer.user_id_update),
    "calls": (calls.CallSignal, calls.calls),
    "account_update": (account.AccountSignal, account.account_update),
    "phone_number_quality_update": (account.QualitySignal, account.phone_number_quality_update),
    "phone_number_name_update": (account.NameSignal, account.phone_number_name_update),
    "message_template_status_update": (
        account.StatusSignal,
        account.message_template_status_update,
    ),
    "message_template_quality_update": (
        account.TemplateQualitySignal,
        account.message_template_quality_update,
    ),
    "template_category_update": (account.CategorySignal, account.template_category_update),
    "message_template_components_update": (
        account.ComponentsSignal,
        account.message_template_components_update,
    ),
}
# Field `messages`: the message `type` -> the options model and the builder.
MESSAGE_TYPES: dict[str, tuple[type[BaseModel], Builder]] = {
    "user_changed_number": (customer.NumberChangeSignal, customer.user_changed_number),
    "user_changed_user_id": (customer.UserIdChangeSignal, customer.user_changed_user_id),
    "customer_identity_changed": (customer.CustomerSignal, customer.customer_identity_changed),
    "call_permission_reply": (calls.PermissionReplySignal, calls.call_permission_reply),
}


class EmitError(ValueError):
    """A request the emit API cannot build (answered 400 with this reason)."""


def _builder(data: dict[str, Any]) -> tuple[type[BaseModel], Builder]:
    field = data.get("field")
    if field == "messages":
        kind = data.get("type")
        found = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
        if found is None:
            raise EmitError(
                f"for field messages, give type: one of {', '.join(MESSAGE_TYPES)} "
                "(customers' other messages: POST /_sandbox/inbound)"
            )
        return found
    found = FIELDS.get(field) if isinstance(field, str) else None
    if found is None:
        raise EmitError(
            f"field must be one of {', '.join([*FIELDS, 'messages'])}, or give 'raw' (the value) "
            f"to post any field as it is (got {field!r})"
        )
    return found


def build(state: SandboxState, data: Any) -> tuple[str, Built]:
    """The field and the webhook (with the answer's extras) an emit request asks for."""
    if not isinstance(data, dict):
        raise EmitError("the body must be a JSON object")
    field = data.get("field")
    if "raw" in data:
        if not isinstance(field, str) or not field or not isinstance(data["raw"], dict):
            raise EmitError("a raw emit needs 'field' (a string) and 'raw' (the value, an object)")
        return field, (account_envelope(state.config, field, data["raw"], state.clock()), {})
    model, builder = _builder(data)
    try:
        signal = model.model_validate(data)
    except ValidationError as exc:
        raise EmitError(str(exc)) from None
    try:
        return str(field), builder(state, signal)
    except ValueError as exc:  # InboundError and the registry's own: a 400, never a 500
        raise EmitError(str(exc)) from None


async def emit(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        data = orjson.loads(await request.read())
        field, (payload, extras) = build(state, data)
    except orjson.JSONDecodeError as exc:
        return json_response({"error": f"invalid JSON: {exc}"}, status=400)
    except EmitError as exc:
        return json_response({"error": str(exc)}, status=400)
    delivery = await state.dispatcher.deliver_now(payload, kind=field)
    log.info("emitted %s (webhook %d): %s", field, delivery.id, delivery.status or delivery.error)
    answer: dict[str, Any] = {
        "field": field,
        "delivery_id": delivery.id,
        "gateway_status": delivery.status or 0,
        **extras,
        "payload": payload,
    }
    if delivery.error:
        answer["error"] = delivery.error
    return json_response(answer)


async def kinds(request: web.Request) -> web.Response:
    """Every kind emit builds, with its options and their defaults."""

    def options(model: type[BaseModel]) -> dict[str, Any]:
        return {
            name: (None if info.is_required() else info.get_default(call_default_factory=True))
            for name, info in model.model_fields.items()
            if name not in ("field", "type")
        }

    found = {field: options(model) for field, (model, _) in FIELDS.items()}
    found.update({f"messages/{kind}": options(model) for kind, (model, _) in MESSAGE_TYPES.items()})
    return json_response({"kinds": to_jsonable_python(found)})


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/_sandbox/webhooks/emit", emit)
    app.router.add_get("/_sandbox/webhooks/kinds", kinds)
