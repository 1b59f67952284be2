"""The Graph API stand-in: `/messages`, media upload, media URL and media download."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from sandbox.errors import INVALID_TOKEN_MESSAGE, MISSING_TOKEN_MESSAGE, GraphError
from sandbox.faults import RequestFaults
from sandbox.keys import STATE_KEY
from sandbox.people import Person
from sandbox.state import SandboxState
from sandbox.validation import ReadReceipt, SendRequest, validate_request
from shared.phone import digits, maybe_e164

log = logging.getLogger("sandbox.graph")

VERSION = r"{version:v\d+(?:\.\d+)?}"
DOWNLOAD_PATH = "/whatsapp_business/attachments/"

MB = 1024 * 1024
# Meta's supported media types and their size limits.
MEDIA_LIMITS: dict[str, int] = {
    "audio/aac": 16 * MB,
    "audio/amr": 16 * MB,
    "audio/mpeg": 16 * MB,
    "audio/mp4": 16 * MB,
    "audio/ogg": 16 * MB,
    "image/jpeg": 5 * MB,
    "image/png": 5 * MB,
    "image/webp": 500 * 1024,
    "video/3gpp": 16 * MB,
    "video/mp4": 16 * MB,
    "text/plain": 100 * MB,
    "application/pdf": 100 * MB,
    "application/msword": 100 * MB,
    "application/vnd.ms-excel": 100 * MB,
    "application/vnd.ms-powerpoint": 100 * MB,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 100 * MB,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * MB,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": 100 * MB,
}
MAX_UPLOAD = 101 * MB


def setup_routes(app: web.Application) -> None:
    app.router.add_post(f"/{VERSION}/{{phone_number_id}}/messages", send_message)
    app.router.add_post(f"/{VERSION}/{{phone_number_id}}/media", upload_media)
    app.router.add_get(DOWNLOAD_PATH, download_media)
    app.router.add_get(f"/{VERSION}/{{media_id}}", media_info)
    app.router.add_delete(f"/{VERSION}/{{media_id}}", delete_media)


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def error_response(error: GraphError, state: SandboxState) -> web.Response:
    response = json_response(error.body(state.ids.fbtrace_id()), error.http_status)
    if error.code == 190:
        response.headers["WWW-Authenticate"] = (
            f'OAuth "Facebook Platform" "invalid_token" "{error.message}"'
        )
    return response


def unknown_object(object_id: str, method: str) -> GraphError:
    message = (
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation. Please read the "
        "Graph API documentation at https://developers.facebook.com/docs/graph-api"
    )
    return GraphError(100, message, message=message, error_type="GraphMethodException")


def authorize(request: web.Request, state: SandboxState) -> None:
    """Bearer token (or `access_token` query parameter), as Meta checks it: 190 otherwise."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
    else:
        token = request.query.get("access_token", "")
    if not token:
        raise GraphError(190, MISSING_TOKEN_MESSAGE, message=MISSING_TOKEN_MESSAGE)
    if not hmac.compare_digest(token.encode(), state.token.encode()):
        raise GraphError(190, INVALID_TOKEN_MESSAGE, message=INVALID_TOKEN_MESSAGE)
    if state.faults.token_expired:
        now = time.time()
        message = (
            "Error validating access token: Session has expired on "
            f"{_graph_time(now - 3600)}. The current time is {_graph_time(now)}."
        )
        raise GraphError(190, message, message=message, subcode=463)


def _graph_time(moment: float) -> str:
    return time.strftime("%A, %d-%b-%y %H:%M:%S UTC", time.gmtime(moment))


def _check_number(request: web.Request, state: SandboxState) -> None:
    number_id = request.match_info["phone_number_id"]
    if number_id != state.config.phone_number_id:
        raise unknown_object(number_id, "post")


async def _suffer(faults: RequestFaults, state: SandboxState) -> None:
    """Latency, hangs and 500s injected before a request is handled."""
    if faults.latency:
        await asyncio.sleep(faults.latency)
    if faults.timeout is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), faults.timeout)
        if not faults.timeout_accepts:
            raise GraphError(131016)
    if faults.http_500:
        raise GraphError(131000)


# --- messages ------------------------------------------------------------------------------


async def send_message(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        authorize(request, state)
        _check_number(request, state)
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise GraphError(100, "Invalid JSON in request body") from None
        await _suffer(state.faults.for_request(_fault_scope(state, body)), state)
        result = validate_request(body, state.templates)
        if isinstance(result, ReadReceipt):
            state.record_read(result)
            return json_response({"success": True})
        person = state.people.get_or_create(result.address)
        failure_code = _enforce(state, result, person)
        wamid = state.accept(result, person, failure_code)
    except GraphError as error:
        log.debug("send answered %s: %s", error.code, error.details)
        return error_response(error, state)
    # Meta's answer names the recipient the way the send did: `wa_id`, or `user_id` for a BSUID.
    if result.to is not None:
        contact = {"input": result.input, "wa_id": digits(result.to)}
    else:
        contact = {"input": result.input, "user_id": result.address}
    return json_response(
        {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}
    )


def _fault_scope(state: SandboxState, body: Any) -> str | None:
    """The recipient scope of the request faults, read before the body is validated."""
    if not state.faults.recipients or not isinstance(body, dict):
        return None
    to, recipient = body.get("to"), body.get("recipient")
    identifier = maybe_e164(to) if isinstance(to, str) else None
    if identifier is None and isinstance(recipient, str):
        identifier = recipient
    if identifier is None:
        return None
    person = state.people.find(identifier)
    return state.fault_scope(person) if person else identifier


def _enforce(state: SandboxState, send: SendRequest, person: Person) -> int | None:
    """Injected errors, the account's state, what the recipient accepts, the 24 h window, then
    the throughput and pair limits. Returns a code to fail the send with later (131050 when
    configured `async`)."""
    injected = state.faults.take_error(state.fault_scope(person))
    if injected is not None:
        raise GraphError(injected[0], injected[1])
    window_open = state.window_open(person)
    is_template = send.type == "template"
    state.account.check(state.clock(), business_initiated=is_template and not window_open)
    template = send.template.template if send.template is not None else None
    # Authentication templates need a phone number (Meta's business-scoped user ids page).
    if template is not None and send.to is None and template.category == "AUTHENTICATION":
        raise GraphError(131062)
    failure_code = None
    if template is not None and template.category == "MARKETING" and person.marketing_stopped:
        if state.config.marketing_stop_failure == "sync":
            raise GraphError(131050)
        failure_code = 131050
    if state.config.enforce_window and not is_template and not window_open:
        raise GraphError(131047)
    now = state.monotonic()
    if not state.throughput.take(now):
        state.throttled += 1
        raise GraphError(130429)
    if not state.pairs.take(person.key, now):
        raise GraphError(131056)
    return failure_code


# --- media ---------------------------------------------------------------------------------


async def upload_media(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        authorize(request, state)
        _check_number(request, state)
        await _suffer(state.faults.for_request(None), state)
        if not request.content_type.startswith("multipart/"):
            raise GraphError(100, "The parameter file is required.")
        form = await request.post()
        if form.get("messaging_product") != "whatsapp":
            raise GraphError(100, "The parameter messaging_product is required.")
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise GraphError(100, "The parameter file is required.")
        data = upload.file.read()
        declared = form.get("type")
        mime_type = declared if isinstance(declared, str) and declared else upload.content_type
        mime_type = mime_type.split(";")[0].strip().lower()
        limit = MEDIA_LIMITS.get(mime_type)
        if limit is None:
            raise GraphError(
                100,
                "Param file must be a file with one of the following types: "
                f"{', '.join(MEDIA_LIMITS)}. Received file of type '{mime_type}'.",
            )
        if len(data) > limit:
            raise GraphError(
                131053, f"File size {len(data)} exceeds the {limit} bytes limit for {mime_type}."
            )
        media = state.store_media(data, mime_type, upload.filename)
    except GraphError as error:
        return error_response(error, state)
    return json_response({"id": media.id})


def _url_hash(state: SandboxState, media_id: str, expires: str) -> str:
    key = state.config.app_secret.encode()
    return hmac.new(key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


async def media_info(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    media_id = request.match_info["media_id"]
    try:
        authorize(request, state)
        media = state.media.get(media_id)
        owner = request.query.get("phone_number_id", state.config.phone_number_id)
        if media is None or owner != state.config.phone_number_id:
            raise unknown_object(media_id, "get")
    except GraphError as error:
        return error_response(error, state)
    expires = str(int(state.clock() + state.config.media_url_ttl_seconds))
    url = (
        request.url.origin()
        .with_path(DOWNLOAD_PATH)
        .with_query(mid=media.id, ext=expires, hash=_url_hash(state, media.id, expires))
    )
    return json_response(
        {
            "url": str(url),
            "mime_type": media.mime_type,
            "sha256": media.sha256,
            "file_size": str(len(media.data)),
            "id": media.id,
            "messaging_product": "whatsapp",
        }
    )


async def delete_media(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    media_id = request.match_info["media_id"]
    try:
        authorize(request, state)
        if state.media.pop(media_id, None) is None:
            raise unknown_object(media_id, "delete")
    except GraphError as error:
        return error_response(error, state)
    return json_response({"success": True})


async def download_media(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        authorize(request, state)
    except GraphError as error:
        return error_response(error, state)
    media_id = request.query.get("mid", "")
    expires = request.query.get("ext", "")
    signature = request.query.get("hash", "")
    media = state.media.get(media_id)
    valid = hmac.compare_digest(signature, _url_hash(state, media_id, expires))
    if media is None or not valid:
        raise web.HTTPNotFound(text="Media not found")
    if not expires.isdigit() or int(expires) < state.clock():
        raise web.HTTPNotFound(text="URL signature expired")
    return web.Response(body=media.data, content_type=media.mime_type)
