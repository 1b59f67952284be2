"""The four template fields: status (``message_template_status_update``), quality
(``message_template_quality_update``), category (``template_category_update``, made or
announced) and texts (``message_template_components_update``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway.parser.account import envelope
from gateway.parser.parsed import Parsed
from gateway.parser.read import (
    Json,
    as_dicts,
    as_id,
    as_moment,
    as_object,
    as_str,
)
from shared.events import Event
from shared.signals import (
    TemplateCategoryUpdate,
    TemplateComponentsUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
)

# Meta's info objects on a status update: why a template was disabled, paused or rejected.
STATUS_DETAILS = ("disable_info", "other_info", "rejection_info")
# How far ahead a category change may be announced (Meta: 24 hours; a year bounds nonsense).
ANNOUNCEMENT_HORIZON = timedelta(days=366)


def _template(value: Json) -> dict[str, Any]:
    return {
        "template_id": as_id(value.get("message_template_id")),
        "template_name": as_id(value.get("message_template_name")),
        "language": as_id(value.get("message_template_language")),
    }


def _publish(
    field: str,
    cls: type[Event],
    value: Json,
    waba_id: str | None,
    entry: Json,
    parsed: Parsed,
    read: list[Any],
    **values: Any,
) -> None:
    template = _template(value)
    parsed.emit(
        field,
        field,
        cls,
        **envelope(cls, value, waba_id, entry, parsed, [*read, *template.values()]),
        waba_id=waba_id,
        **template,
        **values,
    )


def status_update(value: Json, waba_id: str | None, entry: Json, parsed: Parsed) -> None:
    field = "message_template_status_update"
    event = parsed.require(field, value, "event")
    if event is None:
        return
    reason = as_str(value.get("reason"))
    details = {key: value[key] for key in STATUS_DETAILS if as_object(value.get(key)) is not None}
    _publish(
        field,
        TemplateStatusUpdate,
        value,
        waba_id,
        entry,
        parsed,
        [event, reason],
        event=event,
        reason=reason,
        category=as_id(value.get("message_template_category")),
        details=details,
        raw=value,
    )


def quality_update(value: Json, waba_id: str | None, entry: Json, parsed: Parsed) -> None:
    field = "message_template_quality_update"
    new = parsed.require(field, value, "new_quality_score")
    if new is None:
        return
    _publish(
        field,
        TemplateQualityUpdate,
        value,
        waba_id,
        entry,
        parsed,
        [new],
        previous_quality=as_id(value.get("previous_quality_score")),
        new_quality=new,
    )


def category_update(value: Json, waba_id: str | None, entry: Json, parsed: Parsed) -> None:
    """Made: ``previous_category`` -> ``new_category``. Announced (impending): the template is
    still ``new_category`` and becomes ``correct_category`` at ``category_update_timestamp``."""
    field = "template_category_update"
    current = as_id(value.get("new_category"))
    correct = as_id(value.get("correct_category"))
    effective_at = None
    if correct is not None:
        previous, new = current, correct
        effective_at = as_moment(
            value.get("category_update_timestamp"),
            parsed.received_at,
            ahead=ANNOUNCEMENT_HORIZON,
        )
    elif current is not None:
        previous, new = as_id(value.get("previous_category")), current
    else:
        parsed.skip(field, f"{field} without new_category")
        return
    _publish(
        field,
        TemplateCategoryUpdate,
        value,
        waba_id,
        entry,
        parsed,
        [previous, new],
        previous_category=previous,
        new_category=new,
        effective_at=effective_at,
    )


def components_update(value: Json, waba_id: str | None, entry: Json, parsed: Parsed) -> None:
    field = "message_template_components_update"
    body = as_str(value.get("message_template_element"))
    _publish(
        field,
        TemplateComponentsUpdate,
        value,
        waba_id,
        entry,
        parsed,
        [body],
        body=body,
        header=as_str(value.get("message_template_title")),
        footer=as_str(value.get("message_template_footer")),
        buttons=as_dicts(value.get("message_template_buttons")),
    )
