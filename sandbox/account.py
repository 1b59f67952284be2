"""What `account_update` webhooks change at Meta's end: a disabled or restricted account.

A disabled account (`DISABLED_UPDATE`, `ban_info.waba_ban_state: DISABLE`) answers every send
131031 until `REINSTATE`. An `ACCOUNT_RESTRICTION` blocks business-initiated messages (a template
outside the customer's 24 h window) or customer-initiated ones (replies inside it) with 368,
until each restriction's `expiration`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import GraphError

BUSINESS_INITIATED = "RESTRICTED_BIZ_INITIATED_MESSAGING"
CUSTOMER_INITIATED = "RESTRICTED_CUSTOMER_INITIATED_MESSAGING"


@dataclass(slots=True)
class Account:
    disabled: bool = False
    # Restriction type -> when it expires (epoch seconds).
    restrictions: dict[str, float] = field(default_factory=dict)

    def clear(self) -> None:
        self.disabled = False
        self.restrictions.clear()

    def apply(self, value: dict[str, Any]) -> None:
        """Keep what an `account_update` value says about the account's ability to send."""
        event = value.get("event")
        if event == "DISABLED_UPDATE":
            state = (value.get("ban_info") or {}).get("waba_ban_state")
            if state == "DISABLE":
                self.disabled = True
            elif state == "REINSTATE":
                self.disabled = False
        elif event == "ACCOUNT_RESTRICTION":
            for restriction in value.get("restriction_info") or []:
                kind = restriction.get("restriction_type")
                if isinstance(kind, str):
                    self.restrictions[kind] = float(restriction.get("expiration") or 0)

    def check(self, now: float, *, business_initiated: bool) -> None:
        """Raise what Meta answers a send from this account now, if anything."""
        if self.disabled:
            raise GraphError(131031)
        kind = BUSINESS_INITIATED if business_initiated else CUSTOMER_INITIATED
        if self.restrictions.get(kind, 0) > now:
            who = "business-initiated" if business_initiated else "customer-initiated"
            raise GraphError(368, f"The account is restricted from {who} messaging ({kind}).")
        self.restrictions.pop(kind, None)
