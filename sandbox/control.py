"""The sandbox's own routes: what it recorded, faults to inject, and reset."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from pydantic import ValidationError

from sandbox.faults import FaultRequest
from sandbox.graph import json_response
from sandbox.keys import STATE_KEY
from sandbox.people import parse_identifier

log = logging.getLogger("sandbox.control")


def _after(request: web.Request) -> int:
    try:
        return int(request.query.get("after", "-1"))
    except ValueError:
        raise web.HTTPBadRequest(text="'after' must be an integer") from None


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def messages(request: web.Request) -> web.Response:
    """Every accepted send (`?after=<index>` for later ones), every read receipt, and how many
    sends the number's throughput limit refused (130429)."""
    state = request.app[STATE_KEY]
    after = _after(request)
    return json_response(
        {
            "messages": state.messages[after + 1 :],
            "read_receipts": state.read_receipts,
            "throttled": state.throttled,
        }
    )


async def webhooks(request: web.Request) -> web.Response:
    """The webhook deliveries still in the log (`?after=<id>` for later ones)."""
    state = request.app[STATE_KEY]
    after = _after(request)
    deliveries = [d.to_json() for d in state.dispatcher.log if d.id > after]
    return json_response({"webhooks": deliveries, "pending": state.dispatcher.pending})


async def templates(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"templates": [t.model_dump() for t in state.templates.all()]})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    log.info("state reset")
    return json_response({"reset": True})


async def get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[STATE_KEY].faults.snapshot())


async def set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        fault = FaultRequest.model_validate(orjson.loads(await request.read()))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        return json_response({"error": str(exc)}, status=400)
    recipient = None
    if fault.recipient is not None:
        # A phone or a BSUID; the faults reach the person whichever identifier a send uses.
        parsed = parse_identifier(fault.recipient)
        if parsed is None:
            error = f"not a phone number or a business-scoped user id: {fault.recipient!r}"
            return json_response({"error": error}, 400)
        recipient = parsed[1]
    state.faults.apply(fault, recipient)
    if fault.new_token is not None:
        state.token = fault.new_token
    log.info("faults for %s: %s", recipient or "the number", fault.model_dump(exclude_unset=True))
    return json_response(state.faults.snapshot())


async def clear_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.faults.clear()
    log.info("faults cleared")
    return json_response(state.faults.snapshot())


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/_sandbox/health", health)
    app.router.add_get("/_sandbox/messages", messages)
    app.router.add_get("/_sandbox/webhooks", webhooks)
    app.router.add_get("/_sandbox/templates", templates)
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_get("/_sandbox/faults", get_faults)
    app.router.add_post("/_sandbox/faults", set_faults)
    app.router.add_delete("/_sandbox/faults", clear_faults)
