"""Circuits: a number's sending held while Meta refuses it for the account's sake, one message
probing now and then, every replica learning of it.

Each number has a circuit of each kind (``sender.policy``: ``token``, an access token that
fails; ``payment``, a problem with the account's payment method). A circuit opens on the first
refusal, holds every message of the number (they wait, they do not fail), lets one message
through every ``probe_seconds`` and closes on the first answer that shows the cause is gone.
The state is per replica; the database keeps which circuits are open (one incident per opening,
so one error report goes out) and :meth:`Circuits.start` brings them back at start-up, probing
at once (the token may have been renewed, the bill paid, meanwhile).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

CircuitState = Literal["closed", "open", "probing"]


@dataclass
class Circuit:
    """One of a number's circuits: closed (send), open (hold), probing (one send tries)."""

    probe_seconds: float
    clock: Callable[[], float] = time.monotonic
    state: CircuitState = "closed"
    next_probe_at: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def admit(self) -> tuple[bool, float]:
        """(is_probe, 0) to send now; (False, seconds) to hold the message that long."""
        if self.state == "closed":
            return False, 0.0
        now = self.clock()
        if self.state == "open" and now >= self.next_probe_at:
            self.state = "probing"
            return True, 0.0
        wait = max(self.next_probe_at - now, 0.0) if self.state == "open" else self.probe_seconds
        # Spread the held messages over the interval so they do not all come back at once.
        return False, max(wait, self.probe_seconds * (0.5 + self.rng.random() / 2))

    def failed(self) -> bool:
        """Open (again); True when this closed circuit just opened."""
        was_closed = self.state == "closed"
        self.state = "open"
        self.next_probe_at = self.clock() + self.probe_seconds
        return was_closed

    def worked(self) -> bool:
        """Close; True when it was not closed."""
        was_open = self.state != "closed"
        self.state = "closed"
        return was_open

    def probe_abandoned(self) -> None:
        """The probe never reached Meta: let the next message probe."""
        if self.state == "probing":
            self.state = "open"
            self.next_probe_at = self.clock()

    @property
    def value(self) -> float:
        return {"closed": 0.0, "open": 1.0, "probing": 2.0}[self.state]


class OpenCircuits(Protocol):
    async def open_circuits(self) -> list[tuple[str, str]]:
        """(number, kind) of the circuits an earlier run left open."""
        ...


class Circuits:
    """Every number's circuits (a resource: :meth:`start` restores the ones left open)."""

    def __init__(
        self,
        probe_seconds: float,
        *,
        kinds: Sequence[str] = ("token",),
        store: OpenCircuits | None = None,
        report: Callable[[str, str, Circuit], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe_seconds = probe_seconds
        self.kinds = tuple(kinds)  # in the order they are looked at: the first open one holds
        self._store = store
        self._report = report  # the gauge of a restored circuit
        self._clock = clock
        self._circuits: dict[tuple[str, str], Circuit] = {}

    def for_number(self, phone_number_id: str, kind: str = "token") -> Circuit:
        circuit = self._circuits.get((phone_number_id, kind))
        if circuit is None:
            circuit = Circuit(self.probe_seconds, self._clock)
            self._circuits[(phone_number_id, kind)] = circuit
        return circuit

    def holding(self, phone_number_id: str) -> tuple[str, Circuit]:
        """The circuit a message of the number goes through: the first one not closed (its kind
        first), else the first kind's (closed)."""
        for kind in self.kinds:
            circuit = self._circuits.get((phone_number_id, kind))
            if circuit is not None and circuit.state != "closed":
                return kind, circuit
        return self.kinds[0], self.for_number(phone_number_id, self.kinds[0])

    def not_closed(self, phone_number_id: str) -> list[tuple[str, Circuit]]:
        return [
            (kind, circuit)
            for kind in self.kinds
            if (circuit := self._circuits.get((phone_number_id, kind))) is not None
            and circuit.state != "closed"
        ]

    async def start(self) -> None:
        if self._store is None:
            return
        for number, kind in await self._store.open_circuits():
            # Left open by an earlier run: probe at once (the cause may be gone meanwhile).
            circuit = self.for_number(number, kind)
            circuit.failed()
            circuit.next_probe_at = 0.0
            if self._report is not None:
                self._report(number, kind, circuit)

    async def close(self) -> None:
        return None
