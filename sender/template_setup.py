"""The templates Mensajero needs, at Meta: listed, created, and checked at start-up.

The company profiles name them (``templates``: handoff's agent alert and the customers'
re-engagement by default, with their texts and buttons); Meta's template API
(``GET``/``POST /<META_WA_BUSINESS_ACCOUNT_ID>/message_templates``) has what exists.

- ``python -m sender templates``: the account's templates with status, category and quality,
  and which configured ones Meta lacks;
- ``python -m sender templates sync``: creates the configured ones Meta lacks (Meta reviews
  them: PENDING, then APPROVED or REJECTED, told by a ``message_template_status_update``);
- at start-up (and every ``SENDER_TEMPLATE_CHECK_SECONDS``) the sender reads the list into its
  template states and warns about each configured template that is missing or not approved.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sender.deps import Deps
from sender.graph import AiohttpGraphClient, GraphApiError, GraphClient, GraphUnavailable
from sender.settings import Settings
from sender.signals import refresh_templates
from sender.store import TemplateState, TemplateUpdate
from shared.profiles import ProfileError, Profiles, TemplateDefinition, load_profiles
from shared.settings import load_or_exit

log = logging.getLogger("mensajero.sender")

USAGE = "usage: python -m sender templates [sync]"


def configured_templates(profiles: Profiles) -> list[TemplateDefinition]:
    """Every template the profiles name, once per (name, language)."""
    found: dict[tuple[str, str], TemplateDefinition] = {}
    for profile in profiles.profiles:
        for template in profile.templates:
            found.setdefault((template.name, template.language), template)
    return list(found.values())


def listed_state(item: dict[str, Any]) -> TemplateState:
    """A template of Meta's list."""
    quality = item.get("quality_score")
    score = quality.get("score") if isinstance(quality, dict) else quality
    return TemplateState(
        name=str(item.get("name") or ""),
        language=str(item.get("language") or ""),
        status=_text(item.get("status")),
        category=_text(item.get("category")),
        quality=_text(score),
        template_id=_text(item.get("id")),
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def problems(wanted: Sequence[TemplateDefinition], states: Sequence[TemplateState]) -> list[str]:
    """One line for each configured template that Meta lacks or has not approved."""
    at_meta = {(s.name, s.language): s for s in states}
    found: list[str] = []
    for template in wanted:
        state = at_meta.get((template.name, template.language))
        if state is None:
            found.append(
                f"template {template.name} ({template.language}) is configured but missing at "
                "Meta: create it with `python -m sender templates sync`"
            )
        elif state.status != "APPROVED":
            found.append(
                f"template {template.name} ({template.language}) is {state.status or 'unknown'} "
                "at Meta, not APPROVED: sends that use it fail"
            )
    return found


def creation_body(template: TemplateDefinition) -> dict[str, Any]:
    """``POST /<WABA_ID>/message_templates``'s body for a configured template."""
    components: list[dict[str, Any]] = []
    if template.header is not None:
        components.append({"type": "HEADER", "format": "TEXT", "text": template.header})
    body: dict[str, Any] = {"type": "BODY", "text": template.body}
    if template.body_examples:
        body["example"] = {"body_text": [list(template.body_examples)]}
    components.append(body)
    if template.footer is not None:
        components.append({"type": "FOOTER", "text": template.footer})
    if template.buttons:
        components.append(
            {
                "type": "BUTTONS",
                "buttons": [b.model_dump(exclude_none=True) for b in template.buttons],
            }
        )
    return {
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "components": components,
    }


async def meta_states(graph: GraphClient, waba_id: str) -> list[TemplateState]:
    return [listed_state(item) for item in await graph.list_templates(waba_id)]


def listing_update(state: TemplateState, at: datetime) -> TemplateUpdate:
    return TemplateUpdate(
        name=state.name,
        language=state.language,
        template_id=state.template_id,
        status=state.status,
        category=state.category,
        quality=state.quality,
        at=at,
    )


async def check_at_meta(deps: Deps, waba_id: str, wanted: Sequence[TemplateDefinition]) -> None:
    """Meta's list into the template states, and a warning for each configured template that
    is missing or not approved (the start-up check, again every SENDER_TEMPLATE_CHECK_SECONDS)."""
    states = await meta_states(deps.graph, waba_id)
    now = deps.clock()
    for state in states:
        await deps.store.save_template(listing_update(state, now))
    await refresh_templates(deps)
    found = problems(wanted, states)
    for line in found:
        log.warning(line)
    if not found:
        log.info("every configured template is approved at Meta", extra={"templates": len(wanted)})


# --------------------------------------------------------------------------- the command


def main(argv: Sequence[str]) -> int:
    """``python -m sender templates [sync]``; the exit code."""
    if list(argv) not in ([], ["sync"]):
        print(USAGE, file=sys.stderr)
        return 2
    settings = load_or_exit(Settings)
    if not settings.META_WA_BUSINESS_ACCOUNT_ID:
        print("META_WA_BUSINESS_ACCOUNT_ID es requerido", file=sys.stderr)
        return 2
    try:
        wanted = configured_templates(load_profiles(settings.COMPANY_PROFILES_FILE))
    except ProfileError as error:
        print(f"sender: {error}", file=sys.stderr)
        return 2
    graph = AiohttpGraphClient.from_settings(settings)
    run = sync if argv else show
    try:
        return asyncio.run(_with(graph, run, settings.META_WA_BUSINESS_ACCOUNT_ID, wanted))
    except (GraphApiError, GraphUnavailable) as error:
        print(f"sender: the Graph API answered: {error}", file=sys.stderr)
        return 1


async def _with(graph: AiohttpGraphClient, run: Any, waba_id: str, wanted: Any) -> int:
    await graph.start()
    try:
        code: int = await run(graph, waba_id, wanted)
        return code
    finally:
        await graph.close()


async def show(graph: GraphClient, waba_id: str, wanted: Sequence[TemplateDefinition]) -> int:
    states = await meta_states(graph, waba_id)
    names = {(t.name, t.language) for t in wanted}
    rows = [("NAME", "LANGUAGE", "STATUS", "CATEGORY", "QUALITY", "CONFIGURED")]
    for s in states:
        configured = "yes" if (s.name, s.language) in names else ""
        rows.append(
            (s.name, s.language, s.status or "-", s.category or "-", s.quality or "-", configured)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for line in problems(wanted, states):
        print(line)
    return 0


async def sync(graph: GraphClient, waba_id: str, wanted: Sequence[TemplateDefinition]) -> int:
    at_meta = {(s.name, s.language): s for s in await meta_states(graph, waba_id)}
    failed = 0
    for template in wanted:
        label = f"{template.name} ({template.language})"
        state = at_meta.get((template.name, template.language))
        if state is not None:
            print(f"exists: {label}, {state.status or 'unknown'}")
            continue
        try:
            answer = await graph.create_template(waba_id, creation_body(template))
        except GraphApiError as error:
            print(f"could not create {label}: {error}")
            failed += 1
            continue
        print(f"created: {label}, {answer.get('status', 'PENDING')} (id {answer.get('id')})")
    return 1 if failed else 0
