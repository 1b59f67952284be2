"""One customer, whichever identifier addresses them: a phone (E.164), a business-scoped user id
(BSUID) or a parent BSUID.

Meta's limits belong to the person, not to the identifier: the pair limit, the 131056 backoff
and the order of one conversation's messages are kept per **customer key**. The database
(``customer_ids``) knows which identifiers are one customer, learnt from commands naming both
(``to`` a BSUID and ``to_phone``), from statuses naming both, and from ``IdentityChanged``;
every replica keeps what it has learnt in :class:`Customers` (a claim also tells it the key the
database knows), so the per-message path reads memory, not the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from shared.events import Identity

# Identifiers a replica remembers; past this, it starts over (the claims teach it again).
MAX_REMEMBERED = 200_000


class CustomerLinks(Protocol):
    async def link_customer(self, identifiers: Sequence[str]) -> str:
        """Record that ``identifiers`` (the first one preferred as the key of a new customer)
        are one customer; the customer's key."""
        ...


class Customers:
    """The customer key of each identifier this replica has learnt (unknown: itself)."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    def key(self, identifier: str) -> str:
        return self._keys.get(identifier, identifier)

    def learn(self, identifiers: Iterable[str], customer: str) -> None:
        if len(self._keys) > MAX_REMEMBERED:
            self._keys.clear()
        for identifier in identifiers:
            if identifier and identifier != customer:
                self._keys[identifier] = customer
            elif identifier:
                self._keys.pop(identifier, None)

    def known_together(self, identifiers: Sequence[str]) -> bool:
        return len({self.key(i) for i in identifiers}) <= 1


def identifiers_of(identity: Identity) -> list[str]:
    """A customer's identifiers, the phone first (the preferred key of a new customer)."""
    found = [identity.phone, identity.user_id, identity.parent_user_id]
    return list(dict.fromkeys(i for i in found if i))


async def link(links: CustomerLinks, customers: Customers, identifiers: Sequence[str]) -> str:
    """The customer key of ``identifiers``, recorded as one customer when this replica did not
    know them together yet (a database round trip only then)."""
    unique = list(dict.fromkeys(i for i in identifiers if i))
    if not unique:
        return ""
    if len(unique) == 1 or customers.known_together(unique):
        return customers.key(unique[0])
    customer = await links.link_customer(unique)
    customers.learn(unique, customer)
    return customer
