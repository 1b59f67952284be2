"""Tolerant readers: a value from a webhook body as the type a field needs, or absent.

Input is whatever JSON Meta (or anybody who knows the secret) sent, so nothing is assumed about
types: a field of the wrong type reads as absent, and values are bounded by
:mod:`gateway.bounds` (the edge's rules) as they are read: an id longer than an id can be reads
as absent, an integer outside an int4 reads as absent, a time outside Meta's clock reads as the
arrival time. NULs are replaced before the body is decoded (``gateway.handlers``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.bounds import error_code, id_fits
from shared.events import MetaError

Json = dict[str, Any]

# Meta's clock: no WhatsApp message is older than WhatsApp (2009), none from more than a day
# ahead of our own clock. Other times would break a consumer's date arithmetic (year 1 shown in
# a UTC-3 zone is year 0).
EARLIEST_SECONDS = datetime(2009, 1, 1, tzinfo=UTC).timestamp()
CLOCK_SLACK = timedelta(days=1)


def as_dict(value: Any) -> Json:
    return value if type(value) is dict else {}


def as_list(value: Any) -> list[Any]:
    return value if type(value) is list else []


def as_dicts(value: Any) -> list[Json]:
    """The objects of a list (anything else in it is left out)."""
    return [item for item in as_list(value) if type(item) is dict]


def as_str(value: Any) -> str | None:
    """A string field; Meta sometimes sends ids as numbers, so those read as strings too."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    return None


def as_text(value: Any) -> str | None:
    """Like :func:`as_str` but an empty string reads as absent."""
    text = as_str(value)
    return text or None


def as_id(value: Any) -> str | None:
    """Like :func:`as_str`, but what is too long for an id reads as absent. Also for the short
    codes consumers index or label by (an event name, a template's name, a username)."""
    text = as_str(value)
    return text if text is None or id_fits(text) else None


def as_int(value: Any) -> int | None:
    """An integer (a number or a string of digits) within an int4, else absent."""
    return error_code(value)


def as_float(value: Any) -> float | None:
    """A finite number ("nan" and "inf" are strings float() reads, and no JSON can carry)."""
    kind = type(value)
    if kind is float or kind is int:
        number = float(value)
    elif kind is str:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_bool(value: Any) -> bool:
    return value is True


def as_time(value: Any, fallback: datetime) -> datetime:
    """Meta's unix seconds (a string of digits, or a number) as an aware datetime; ``fallback``
    (the arrival time) for anything else, or a time outside Meta's clock."""
    if type(value) is str and 0 < len(value) <= 12 and value.isascii() and value.isdigit():
        seconds: int | float = int(value)
    elif type(value) is int or type(value) is float:
        seconds = value
    else:
        return fallback
    if not EARLIEST_SECONDS <= seconds <= (fallback + CLOCK_SLACK).timestamp():
        return fallback  # also NaN, which compares false
    return datetime.fromtimestamp(seconds, UTC)


def as_moment(value: Any, now: datetime, *, ahead: timedelta = CLOCK_SLACK) -> datetime | None:
    """Like :func:`as_time` for an optional time, absent when missing or unreadable; ``ahead``:
    how far past ``now`` it may be (an expiry, an announced change)."""
    # as_time accepts up to CLOCK_SLACK past its fallback, and answers with the fallback itself
    # (this very object) for what it cannot read.
    horizon = now + (ahead - CLOCK_SLACK)
    found = as_time(value, horizon)
    return None if found is horizon else found


def as_object(value: Any) -> Json | None:
    """An object passed on as Meta sent it, or absent."""
    return value if type(value) is dict else None


def meta_errors(value: Any) -> list[MetaError]:
    errors = []
    for item in as_dicts(value):
        details = as_str(as_dict(item.get("error_data")).get("details")) or as_str(
            item.get("details")
        )
        errors.append(
            MetaError(
                code=error_code(item.get("code")) or 0,
                title=as_str(item.get("title")),
                message=as_str(item.get("message")),
                details=details,
                href=as_str(item.get("href")),
            )
        )
    return errors


def metadata(value: Json) -> tuple[str, str | None]:
    """A number-level change's ``metadata``: the business number's id ("" when unusable) and
    its display number."""
    found = as_dict(value.get("metadata"))
    return as_id(found.get("phone_number_id")) or "", as_str(found.get("display_phone_number"))


def describe(value: Any) -> str:
    """A value for a log line: a string shortened, anything else by its type (never repr()'d:
    a value nested a thousand deep cannot be)."""
    return repr(value[:60]) if type(value) is str else type(value).__name__


def json_text(value: Any, *, sort_keys: bool = False) -> str | None:
    """``value`` as JSON text; None when it nests deeper than the JSON writer goes (255)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None).decode()
    except orjson.JSONEncodeError:
        return None


def fingerprint(raw: Any, read: list[Any]) -> str:
    """What tells one update from another: ``raw`` as sorted JSON, or, when it nests too deep
    to write out, what was ``read`` of it (flat)."""
    return json_text(raw, sort_keys=True) or orjson.dumps(read).decode()


def first_line(error: Exception) -> str:
    return str(error).split("\n", 1)[0][:200]
