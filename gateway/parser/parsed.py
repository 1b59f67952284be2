"""What one webhook body held: its events, and what could not become one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from gateway.parser.read import Json, as_id, first_line
from shared.events import Event

# The skip counter's ``field`` label outside any change (a body or an entry that is not one).
NO_FIELD = "none"
# ... and for a field no parser covers (its name came from outside: labels must stay few).
OTHER_FIELD = "other"


class Skip(NamedTuple):
    field: str  # the webhook field (NO_FIELD, OTHER_FIELD), the metric's label
    reason: str  # for the log


@dataclass
class Parsed:
    # Stands in for a missing or unreadable time.
    received_at: datetime
    events: list[Event] = field(default_factory=list)
    # Signed but not for us (another object than a WhatsApp Business Account): logged, 200.
    ignored: list[Skip] = field(default_factory=list)
    # Updates too broken to become an event (no message id): logged and counted, 200.
    skips: list[Skip] = field(default_factory=list)

    def skip(self, field: str, reason: str) -> None:
        self.skips.append(Skip(field, reason))

    def require(self, field: str, value: Json, key: str) -> str | None:
        """``value[key]``, a code an update cannot be without (its event, its decision): when
        it is missing or unusable, the update is a skip and this is None."""
        found = as_id(value.get(key)) or None
        if found is None:
            self.skip(field, f"{field} without {key}")
        return found

    def emit(self, field: str, what: str, cls: type[Event], /, **values: Any) -> None:
        """Add ``cls(**values)``; a value its model refuses makes ``what`` a skip instead."""
        try:
            self.events.append(cls(**values))
        except ValueError as error:  # pydantic's ValidationError
            self.skip(field, f"{what}: {first_line(error)}")


# Reads one change's value into ``parsed``: (value, the entry's WABA id, the entry, parsed).
FieldParser = Callable[[Json, str | None, Json, Parsed], None]
