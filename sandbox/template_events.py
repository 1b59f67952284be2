"""What happens to a template at Meta after it exists: review, status, quality, category, edits.

Each change updates the registry (so sends see it) and gives the webhook value Meta posts, from
Meta's reference pages: `message_template_status_update`, `message_template_quality_update`,
`template_category_update` and `message_template_components_update`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sandbox.payloads import account_envelope
from sandbox.state import SandboxState
from sandbox.templates import Template

log = logging.getLogger("sandbox.templates")

# A status event and the status the template has after it, when they differ.
_STATUS_AFTER = {"REINSTATED": "APPROVED", "UNARCHIVED": "APPROVED"}
_PAUSE_DESCRIPTION = (
    "Your WhatsApp message template has been paused because of low quality (feedback from "
    "the people who received it)."
)
_REJECTION_INFO = {
    "reason": "Your template has parameters placed next to each other (like {{1}}{{2}}) "
    "without text or punctuation between them.",
    "recommendation": "Separate parameters with descriptive text and ensure each parameter is "
    "clearly contextualized.",
}


def _ids(template: Template) -> dict[str, Any]:
    return {
        "message_template_id": int(template.template_id),
        "message_template_name": template.name,
        "message_template_language": template.language,
    }


def change_status(
    state: SandboxState, template: Template, event: str, reason: str | None = None
) -> dict[str, Any]:
    """Apply a status event; the `message_template_status_update` webhook to post."""
    pending = state.reviews.pop((template.name, template.language), None)
    if pending is not None:
        pending.cancel()
    now = state.clock()
    reason = reason or ("NONE" if event != "REJECTED" else state.config.template_rejection_reason)
    status = _STATUS_AFTER.get(event, event)
    template = state.templates.update(
        template, status=status, rejected_reason=reason if event == "REJECTED" else None
    )
    value: dict[str, Any] = {
        "event": event,
        **_ids(template),
        "reason": reason,
        "message_template_category": template.category,
    }
    if event == "DISABLED":
        value["disable_info"] = {"disable_date": int(now)}
    elif event == "PAUSED":
        value["other_info"] = {"title": "FIRST_PAUSE", "description": _PAUSE_DESCRIPTION}
    elif event == "REJECTED" and reason == "INVALID_FORMAT":
        value["rejection_info"] = dict(_REJECTION_INFO)
    log.info("template %s (%s) is now %s", template.name, template.language, status)
    return account_envelope(state.config, "message_template_status_update", value, now)


def change_quality(state: SandboxState, template: Template, new: str) -> dict[str, Any]:
    """A new quality score; the `message_template_quality_update` webhook."""
    previous = template.quality_score
    template = state.templates.update(template, quality_score=new)
    value = {"previous_quality_score": previous, "new_quality_score": new, **_ids(template)}
    return account_envelope(state.config, "message_template_quality_update", value, state.clock())


def change_category(
    state: SandboxState, template: Template, new: str, *, impending: bool = False
) -> dict[str, Any]:
    """A category change (done, or announced 24 h ahead); the `template_category_update`."""
    now = state.clock()
    value: dict[str, Any] = _ids(template)
    if impending:
        # Meta's page: `new_category` is then the current one, `correct_category` the next.
        value.update(
            new_category=template.category,
            correct_category=new,
            category_update_timestamp=int(now + 24 * 3600),
        )
    else:
        value.update(previous_category=template.category, new_category=new)
        state.templates.update(template, category=new, previous_category=template.category)
    return account_envelope(state.config, "template_category_update", value, now)


def change_components(
    state: SandboxState,
    template: Template,
    *,
    body: str | None = None,
    header: str | None = None,
    footer: str | None = None,
) -> dict[str, Any]:
    """An edit of the texts; the `message_template_components_update` webhook."""
    changes = {k: v for k, v in (("body", body), ("header", header), ("footer", footer)) if v}
    template = state.templates.update(template, components=None, body_params=None, **changes)
    value: dict[str, Any] = {**_ids(template), "message_template_element": template.body}
    if template.header:
        value["message_template_title"] = template.header
    if template.footer:
        value["message_template_footer"] = template.footer
    buttons = [
        {"message_template_button_type": b.type.upper(), "message_template_button_text": b.text}
        for b in template.buttons
        if b.type in ("url", "phone_number")
    ]
    if buttons:
        value["message_template_buttons"] = buttons
    field = "message_template_components_update"
    return account_envelope(state.config, field, value, state.clock())


def schedule_review(state: SandboxState, template: Template, *, invalid: bool = False) -> None:
    """Approve (or reject) a PENDING template after SANDBOX_TEMPLATE_REVIEW_SECONDS; a template
    with an invalid format is always rejected. `manual` leaves the decision to the emit API."""
    mode = state.config.template_review
    if mode == "manual":
        return
    event = "REJECTED" if invalid or mode == "reject" else "APPROVED"
    reason = "INVALID_FORMAT" if invalid else None

    def review() -> None:
        state.reviews.pop((template.name, template.language), None)
        current = state.templates.get(template.name, template.language)
        if current is not None and current.status == "PENDING":
            payload = change_status(state, current, event, reason)
            state.dispatcher.post("message_template_status_update", payload)

    loop = asyncio.get_running_loop()
    delay = state.config.template_review_seconds
    state.reviews[(template.name, template.language)] = loop.call_later(delay, review)
