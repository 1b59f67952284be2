"""The message templates API: `GET` and `POST /<version>/<WABA_ID>/message_templates`.

`GET` pages the way the Graph API pages (`data`, `paging.cursors.before/after`, `paging.next`),
with `limit`, `after`/`before`, `fields` and the filters Meta supports (`name` contains, and
comma lists of `status`, `category`, `language`, `quality_score`). Without `fields` it returns
Meta's defaults: name, components, language, status, category and id.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from aiohttp import web

from sandbox.errors import GraphError
from sandbox.graph import VERSION, authorize, error_response, json_response, unknown_object
from sandbox.keys import STATE_KEY
from sandbox.state import SandboxState
from sandbox.template_events import schedule_review
from sandbox.template_rules import new_template
from sandbox.templates import Template

DEFAULT_FIELDS = ("name", "components", "language", "status", "category", "id")
FIELDS = (
    *DEFAULT_FIELDS,
    "quality_score",
    "rejected_reason",
    "previous_category",
    "parameter_format",
)
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
_FILTERS = ("status", "category", "language", "quality_score")


def _check_account(request: web.Request, state: SandboxState, method: str) -> None:
    authorize(request, state)
    waba_id = request.match_info["waba_id"]
    if waba_id != state.config.waba_id:
        raise unknown_object(waba_id, method)


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(str(index).encode()).decode().rstrip("=")


def _from_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(base64.urlsafe_b64decode(padded.encode()).decode())
    except ValueError:
        raise GraphError(100, f"Invalid cursor: {cursor!r}") from None


def _fields(request: web.Request) -> tuple[str, ...]:
    raw = request.query.get("fields")
    if not raw:
        return DEFAULT_FIELDS
    asked = tuple(f.strip() for f in raw.split(",") if f.strip())
    for name in asked:
        if name not in FIELDS:
            raise GraphError(
                100,
                message=(
                    f"(#100) Tried accessing nonexisting field ({name}) on node type "
                    "(WhatsAppMessageTemplate)"
                ),
            )
    return asked


def _matches(request: web.Request, template: Template) -> bool:
    name = request.query.get("name")
    if name and name.lower() not in template.name.lower():
        return False
    for field in _FILTERS:
        wanted = request.query.get(field)
        if wanted is None:
            continue
        values = {v.strip().upper() for v in wanted.split(",") if v.strip()}
        have = str(getattr(template, field)).upper()
        if values and have not in values:
            return False
    return True


def template_json(template: Template, fields: tuple[str, ...], now: float) -> dict[str, Any]:
    """A template as the Graph API gives it, with these fields."""
    every: dict[str, Any] = {
        "name": template.name,
        "parameter_format": "POSITIONAL",
        "components": template.graph_components(),
        "language": template.language,
        "status": template.status,
        "category": template.category,
        "quality_score": {"score": template.quality_score, "date": int(now)},
        "rejected_reason": template.rejected_reason or "NONE",
        "id": template.template_id,
    }
    if template.previous_category:
        every["previous_category"] = template.previous_category
    return {name: every[name] for name in fields if name in every}


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise GraphError(100, f"Param limit must be an integer between 1 and {MAX_LIMIT}.")
    return int(raw)


async def list_templates(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        _check_account(request, state, "get")
        fields, limit = _fields(request), _limit(request)
        found = [t for t in state.templates.all() if _matches(request, t)]
        if "after" in request.query:
            start = _from_cursor(request.query["after"]) + 1
        elif "before" in request.query:
            start = max(0, _from_cursor(request.query["before"]) - limit)
        else:
            start = 0
    except GraphError as error:
        return error_response(error, state)
    page = found[start : start + limit]
    answer: dict[str, Any] = {"data": [template_json(t, fields, state.clock()) for t in page]}
    if page:
        last = start + len(page) - 1
        paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
        url = request.url.with_query({**request.query, "limit": str(limit)})
        if last + 1 < len(found):
            paging["next"] = str(
                url.update_query(after=_cursor(last)).without_query_params("before")
            )
        if start > 0:
            paging["previous"] = str(
                url.update_query(before=_cursor(start)).without_query_params("after")
            )
        answer["paging"] = paging
    return json_response(answer)


async def create_template(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        _check_account(request, state, "post")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise GraphError(100, "Invalid JSON in request body") from None
        template, invalid = new_template(body, state.templates, state.ids.media_id())
    except GraphError as error:
        return error_response(error, state)
    state.templates.add(template)
    schedule_review(state, template, invalid=invalid)
    return json_response(
        {"id": template.template_id, "status": template.status, "category": template.category}
    )


def setup_routes(app: web.Application) -> None:
    path = f"/{VERSION}/{{waba_id}}/message_templates"
    app.router.add_get(path, list_templates)
    app.router.add_post(path, create_template)
