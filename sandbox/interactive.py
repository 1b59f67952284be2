"""Interactive messages (`type: interactive`): buttons, lists, CTA URLs and the other kinds."""

from __future__ import annotations

from typing import Any

from sandbox.errors import invalid_param, invalid_value
from sandbox.fields import array, http_url, key, limited, not_one_of, obj, string
from shared.meta_limits import (
    BUTTON_ID_MAX,
    BUTTON_TITLE_MAX,
    BUTTONS_MAX,
    HEADER_FOOTER_MAX,
    INTERACTIVE_BODY_MAX,
    LIST_BODY_MAX,
    LIST_BUTTON_MAX,
    ROW_DESCRIPTION_MAX,
    ROW_ID_MAX,
    ROW_TITLE_MAX,
    ROWS_MAX,
    SECTION_TITLE_MAX,
    SECTIONS_MAX,
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


def validate_interactive(body: dict[str, Any]) -> None:
    interactive = obj(body, "interactive", "interactive")
    kind = interactive.get("type")
    if kind is None:
        raise invalid_param("The parameter interactive['type'] is required.")
    if kind not in INTERACTIVE_TYPES:
        raise not_one_of("interactive['type']", INTERACTIVE_TYPES, kind)

    header = obj(interactive, "header", "interactive['header']", required=False)
    if header is not None:
        _header(header)
    body_part = obj(
        interactive, "body", "interactive['body']", required=kind not in _NO_BODY_NEEDED
    )
    if body_part is not None:
        text = string(body_part, "text", "interactive['body']['text']")
        limit = LIST_BODY_MAX if kind == "list" else INTERACTIVE_BODY_MAX
        limited(text, "interactive['body']['text']", "Body text", limit)
    footer = obj(interactive, "footer", "interactive['footer']", required=False)
    if footer is not None:
        text = string(footer, "text", "interactive['footer']['text']")
        limited(text, "interactive['footer']['text']", "Footer text", HEADER_FOOTER_MAX)

    action = obj(interactive, "action", "interactive['action']")
    if kind == "button":
        _reply_buttons(action)
    elif kind == "list":
        _list_action(action)
    elif kind == "cta_url":
        _cta_url(action)


def _header(header: dict[str, Any]) -> None:
    kind = header.get("type")
    if kind not in _HEADER_TYPES:
        raise not_one_of("interactive['header']['type']", _HEADER_TYPES, kind)
    if kind == "text":
        text = string(header, "text", "interactive['header']['text']")
        limited(text, "interactive['header']['text']", "Header text", HEADER_FOOTER_MAX)
    else:
        media = obj(header, kind, f"interactive['header']['{kind}']")
        path = f"interactive['header']['{kind}']"
        media_id = string(media, "id", key(path, "id"), required=False)
        link = string(media, "link", key(path, "link"), required=False)
        if (media_id is None) == (link is None):
            raise invalid_param(f"Param {path} must have exactly one of id or link.")
        if link is not None:
            http_url(link, key(path, "link"))


def _reply_buttons(action: dict[str, Any]) -> None:
    path = "interactive['action']['buttons']"
    buttons = array(action, "buttons", path)
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise invalid_value(
            f"Invalid buttons count: {path} has {len(buttons)}. "
            f"Min allowed buttons: 1, Max allowed buttons: {BUTTONS_MAX}"
        )
    ids: set[str] = set()
    titles: set[str] = set()
    for i, button in enumerate(buttons):
        at = key(path, i)
        if not isinstance(button, dict):
            raise invalid_param(f"Param {at} must be a JSON object.")
        if button.get("type") != "reply":
            raise not_one_of(f"{at}['type']", ("reply",), button.get("type"))
        reply = obj(button, "reply", key(at, "reply"))
        button_id = string(reply, "id", f"{at}['reply']['id']")
        limited(button_id, f"{at}['reply']['id']", "Button id", BUTTON_ID_MAX)
        title = string(reply, "title", f"{at}['reply']['title']")
        limited(title, f"{at}['reply']['title']", "Button title", BUTTON_TITLE_MAX)
        if button_id in ids:
            raise invalid_value(f"Duplicate button id: {at}['reply']['id'] is \"{button_id}\"")
        if title in titles:
            raise invalid_value(f"Duplicate button title: {at}['reply']['title'] is \"{title}\"")
        ids.add(button_id)
        titles.add(title)


def _list_action(action: dict[str, Any]) -> None:
    button = string(action, "button", "interactive['action']['button']")
    limited(button, "interactive['action']['button']", "Button label", LIST_BUTTON_MAX)
    path = "interactive['action']['sections']"
    sections = array(action, "sections", path)
    if not 1 <= len(sections) <= SECTIONS_MAX:
        raise invalid_value(
            f"Invalid sections count: {path} has {len(sections)}. "
            f"Min allowed sections: 1, Max allowed sections: {SECTIONS_MAX}"
        )
    total_rows = 0
    row_ids: set[str] = set()
    for s, section in enumerate(sections):
        at = key(path, s)
        if not isinstance(section, dict):
            raise invalid_param(f"Param {at} must be a JSON object.")
        title = string(section, "title", key(at, "title"), required=False)
        if title is None and len(sections) > 1:
            raise invalid_value(f"Param {at}['title'] is required with more than one section.")
        if title is not None:
            limited(title, key(at, "title"), "Section title", SECTION_TITLE_MAX)
        rows = array(section, "rows", key(at, "rows"))
        if not rows:
            raise invalid_value(f"Param {at}['rows'] must have at least 1 element.")
        total_rows += len(rows)
        if total_rows > ROWS_MAX:
            raise invalid_value(f"Total row count exceed max allowed count: {ROWS_MAX} ({path}).")
        for r, row in enumerate(rows):
            row_path = key(key(at, "rows"), r)
            if not isinstance(row, dict):
                raise invalid_param(f"Param {row_path} must be a JSON object.")
            row_id = string(row, "id", key(row_path, "id"))
            limited(row_id, key(row_path, "id"), "Row id", ROW_ID_MAX)
            if row_id in row_ids:
                raise invalid_value(f"Duplicate row id: {row_path}['id'] is \"{row_id}\"")
            row_ids.add(row_id)
            row_title = string(row, "title", key(row_path, "title"))
            limited(row_title, key(row_path, "title"), "Row title", ROW_TITLE_MAX)
            description = string(row, "description", key(row_path, "description"), required=False)
            if description is not None and len(description) > ROW_DESCRIPTION_MAX:
                raise invalid_value(
                    f"Row description is too long: {row_path}['description']. "
                    f"Max length: {ROW_DESCRIPTION_MAX}"
                )


def _cta_url(action: dict[str, Any]) -> None:
    name = action.get("name")
    if name != "cta_url":
        raise not_one_of("interactive['action']['name']", ("cta_url",), name)
    params = obj(action, "parameters", "interactive['action']['parameters']")
    path = "interactive['action']['parameters']"
    display = string(params, "display_text", key(path, "display_text"))
    limited(display, key(path, "display_text"), "Display text", BUTTON_TITLE_MAX)
    url = string(params, "url", key(path, "url"))
    http_url(url, key(path, "url"))


# --- templates -----------------------------------------------------------------------------
