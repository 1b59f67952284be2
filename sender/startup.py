"""What the sender tells the operator as it starts: what it sends with, and what needs a look
(a Graph API version about to expire; the template check skipped without an account id)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

from sender.settings import Settings
from sender.versions import version_warning
from shared.logs import fields

log = logging.getLogger("mensajero.sender")


class StartupReport:
    """A resource whose start logs the report (nothing to close)."""

    def __init__(self, settings: Settings, today: Callable[[], date]) -> None:
        self.settings = settings
        self.today = today

    async def start(self) -> None:
        settings = self.settings
        log.info(
            "sender starting",
            extra=fields(
                number=settings.META_WA_PHONE_NUMBER_ID,
                rate=settings.SENDER_RATE_PER_SECOND,
                graph=settings.META_GRAPH_URL,
                version=settings.META_GRAPH_VERSION,
            ),
        )
        warning = version_warning(settings.META_GRAPH_VERSION, self.today())
        if warning is not None:
            log.warning(warning)
        if not settings.META_WA_BUSINESS_ACCOUNT_ID:
            log.warning(
                "META_WA_BUSINESS_ACCOUNT_ID is not set: the configured message templates are"
                " not checked at Meta (set it to be warned of missing or paused ones)"
            )

    async def close(self) -> None:
        return None
