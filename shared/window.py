"""Meta's 24-hour customer service window, defined once.

Meta delivers a free-form message to a WhatsApp user only within 24 hours of that user's last
message to the business; outside it, only an approved template. Handoff keeps who wrote when
and holds what cannot go yet (``handoff.delivery``). When Meta finds a window closed anyway, it
answers 131047: the sender sends the command's fallback template, or reports the failure as
``MessageFailed.reason_code == "window_closed"`` (``sender.policy``), so no other service reads
Meta's code.
"""

from __future__ import annotations

from datetime import datetime, timedelta

CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)


def window_open(last_inbound: datetime | None, now: datetime) -> bool:
    """Whether a free-form message may reach someone who last wrote at ``last_inbound``."""
    return last_inbound is not None and now - last_inbound < CUSTOMER_SERVICE_WINDOW
