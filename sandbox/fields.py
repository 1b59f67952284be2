"""Field checks shared by every Graph API validator, with Meta's wording for each failure.

Details name the field the way Meta does (`interactive['action']['buttons'][0]['reply']['title']`):
code 100 for a missing, mistyped or misspelled parameter, 131009 for a value outside WhatsApp's
limits.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sandbox.errors import GraphError, invalid_param, invalid_value


def key(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}['{key}']"


def not_one_of(path: str, allowed: tuple[str, ...], got: Any) -> GraphError:
    choices = ", ".join(value.upper() for value in allowed)
    return invalid_param(f'Param {path} must be one of {{{choices}}} - got "{got}".')


def obj(parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> Any:
    value = parent.get(key)
    if value is None:
        if required:
            raise invalid_param(f"The parameter {path} is required.")
        return None
    if not isinstance(value, dict):
        raise invalid_param(f"Param {path} must be a JSON object.")
    return value


def array(parent: dict[str, Any], key: str, path: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        raise invalid_param(f"The parameter {path} is required.")
    if not isinstance(value, list):
        raise invalid_param(f"Param {path} must be an array.")
    return value


def string(
    parent: dict[str, Any],
    key: str,
    path: str,
    *,
    required: bool = True,
    max_len: int | None = None,
    allow_empty: bool = False,
) -> Any:
    value = parent.get(key)
    if value is None:
        if required:
            raise invalid_param(f"The parameter {path} is required.")
        return None
    if not isinstance(value, str):
        raise invalid_param(f"Param {path} must be a string.")
    if not value and not allow_empty:
        raise invalid_param(f"Param {path} must be a non-empty string.")
    if max_len is not None and len(value) > max_len:
        raise invalid_param(f"Param {path} must be at most {max_len} characters long.")
    return value


def limited(value: str, path: str, what: str, max_len: int) -> None:
    """WhatsApp's own length rules for interactive parts answer 131009."""
    if not 1 <= len(value) <= max_len:
        raise invalid_value(f"{what} length invalid: {path}. Min length: 1, Max length: {max_len}")


def http_url(value: str, path: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_value(f'Param {path} must be a valid http or https URL - got "{value}".')


def number(parent: dict[str, Any], key: str, path: str, bound: float) -> None:
    value = parent.get(key)
    if value is None:
        raise invalid_param(f"The parameter {path} is required.")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise invalid_param(f"Param {path} must be a number.") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_param(f"Param {path} must be a number.")
    if not -bound <= value <= bound:
        raise invalid_value(f"Param {path} must be between {-bound:g} and {bound:g}.")


# --- message kinds -----------------------------------------------------------------------
