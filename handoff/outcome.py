"""What one handling of one event produces, and what the use cases handle it with.

Every entry point (an inbound message, a handoff request, a send failure, a timer) builds an
:class:`Outcome`: the events to publish through the outbox, and facts for the metrics, applied
only once the transaction commits. Event ids derive from the source event's id and the step, so
a re-run publishes the same ids. A :class:`Turn` is what every use-case function takes: the
configuration, the repository (on the event's transaction) and the outcome being built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from handoff.config import HandoffConfig
from handoff.repository import Repository
from shared.events import Event, stable_id


@dataclass(frozen=True)
class Fact:
    """Something the metrics count once the transaction has committed."""

    name: str  # requested, claimed, first_response, ended, relay, relay_kind
    label: str = ""
    value: float = 0.0


@dataclass
class Outcome:
    source_id: str
    now: datetime
    events: list[Event] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    # An agent's quote of a message whose wamid is not known yet: retry rather than guess.
    wait_for_quotes: bool = False
    _steps: int = 0

    def next_id(self, label: str) -> str:
        self._steps += 1
        return stable_id(self.source_id, f"{self._steps}:{label}")

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def fact(self, name: str, label: str = "", value: float = 0.0) -> None:
        self.facts.append(Fact(name, label, value))


@dataclass(frozen=True)
class Turn:
    """One event's handling: the configuration, its transaction's repository, its outcome."""

    config: HandoffConfig
    repo: Repository
    out: Outcome
