"""Graph API versions and when Meta retires them.

Meta publishes an expiry date for each version of the Graph API (its changelog; the Cloud API
notes list them). A version past its date stops answering, so the sender warns at start-up when
the configured ``META_GRAPH_VERSION`` expires in less than :data:`WARN_DAYS` days, or is older
than every version the table knows (retired already).
"""

from __future__ import annotations

import re
from datetime import date

# Meta's published expiries, as read on EXPIRIES_READ_ON (v26.0 and v27.0: not announced yet).
EXPIRIES_READ_ON = date(2026, 12, 1)
GRAPH_VERSION_EXPIRIES: dict[str, date] = {
    "v21.0": date(2027, 1, 21),
    "v22.0": date(2027, 5, 20),
    "v23.0": date(2027, 10, 8),
    "v24.0": date(2028, 2, 18),
    "v25.0": date(2028, 7, 29),
}
WARN_DAYS = 90
_VERSION = re.compile(r"^v(\d+)\.(\d+)$")


def _number(version: str) -> tuple[int, int] | None:
    found = _VERSION.match(version)
    return (int(found.group(1)), int(found.group(2))) if found else None


def version_warning(version: str, today: date) -> str | None:
    """What to tell the operator about ``version`` today, or None when it is current."""
    expiry = GRAPH_VERSION_EXPIRIES.get(version)
    if expiry is not None:
        left = (expiry - today).days
        if left >= WARN_DAYS:
            return None
        when = "expired" if left < 0 else f"expires in {left} days"
        return (
            f"META_GRAPH_VERSION {version} {when} ({expiry.isoformat()}, Meta's published date "
            f"as of {EXPIRIES_READ_ON.isoformat()}): move to a newer version"
        )
    number = _number(version)
    oldest = min(n for n in (_number(v) for v in GRAPH_VERSION_EXPIRIES) if n is not None)
    if number is None:
        return f"META_GRAPH_VERSION {version!r} does not look like a Graph API version (vNN.0)"
    if number < oldest:
        return (
            f"META_GRAPH_VERSION {version} is older than every version Meta still lists (as of "
            f"{EXPIRIES_READ_ON.isoformat()}): it has probably been retired"
        )
    return None  # newer than the table: no expiry announced yet
