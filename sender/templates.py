"""What the sender knows of each message template: its status, category and quality at Meta.

Meta sends them as webhooks (``TemplateStatusUpdate``, ``TemplateQualityUpdate``,
``TemplateCategoryUpdate``), its answers tell some (132015 paused, 132016 disabled) and its
template list has them all (``python -m sender templates``, and the check at start-up). They
are kept in PostgreSQL; every replica reads them into a :class:`TemplateBook` (refreshed every
``SENDER_STATE_REFRESH_SECONDS``, and at once on the replica that heard of a change), so that a
send reads memory: a template Meta paused, disabled or rejected is refused before Meta is asked,
and a marketing template is known to be one (the customer's preference is read at the claim).
"""

from __future__ import annotations

from collections.abc import Iterable

from sender.store import TemplateState
from shared.events import TemplateContent
from shared.signals import UNSENDABLE_TEMPLATE_STATUSES

MARKETING = "MARKETING"


class TemplateBook:
    """Every template's state as this replica last read it, by (name, language)."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], TemplateState] = {}

    def get(self, name: str, language: str) -> TemplateState | None:
        return self._states.get((name, language))

    def replace(self, states: Iterable[TemplateState]) -> None:
        self._states = {(s.name, s.language): s for s in states}

    def states(self) -> list[TemplateState]:
        return list(self._states.values())

    def refusal(self, template: TemplateContent) -> str | None:
        """Why Meta would not send ``template`` now (None: as far as we know, it would)."""
        state = self.get(template.name, template.language)
        if state is None or state.status not in UNSENDABLE_TEMPLATE_STATUSES:
            return None
        return (
            f"template {template.name} ({template.language}) is {state.status} at Meta: not "
            "sent (use another approved template, or wait until Meta approves it again)"
        )

    def is_marketing(self, template: TemplateContent | None) -> bool:
        if template is None:
            return False
        state = self.get(template.name, template.language)
        return state is not None and (state.category or "").upper() == MARKETING
