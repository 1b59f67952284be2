"""Account-level fields: the WhatsApp Business Account (``account_update``), its numbers
(``phone_number_quality_update``, ``phone_number_name_update``), and fields no model covers.

Their value is the update itself, in an entry with a ``time``. Nothing in them identifies an
update but its content, so the event id is derived from the WABA, the entry's time and the
value as sorted JSON: Meta's retries of the same webhook give the same ids.
"""

from __future__ import annotations

from typing import Any

from gateway.parser.parsed import OTHER_FIELD, Parsed
from gateway.parser.read import Json, as_id, as_str, as_time, fingerprint
from shared.events import Event, stable_id
from shared.signals import AccountUpdate, PhoneNumberName, PhoneNumberQuality, UnhandledField


def envelope(
    cls: type[Event], value: Any, waba_id: str | None, entry: Json, parsed: Parsed, read: list[Any]
) -> dict[str, Any]:
    """The event id and time of an account-level update (``read``: what was read of it, for
    the rare value that nests too deep to write out)."""
    time = entry.get("time")
    return {
        "event_id": stable_id(cls.TYPE, waba_id or "", str(as_str(time)), fingerprint(value, read)),
        "occurred_at": as_time(time, parsed.received_at),
    }


def account_update(value: Json, waba_id: str | None, entry: Json, parsed: Parsed) -> None:
    """Any event of the account (restrictions, a ban, violations, partners, pricing tiers...),
    its detail objects kept as Meta sent them."""
    event = parsed.require("account_update", value, "event")
    if event is None:
        return
    details = {key: item for key, item in value.items() if key != "event"}
    parsed.emit(
        "account_update",
        "account_update",
        AccountUpdate,
        **envelope(AccountUpdate, value, waba_id, entry, parsed, [event]),
        waba_id=waba_id,
        event=event,
        details=details,
    )


def quality_update(value: Json, waba_id: str | None, entry: Json, parsed: Parsed) -> None:
    """A number's quality or messaging limit changed."""
    field = "phone_number_quality_update"
    event = parsed.require(field, value, "event")
    if event is None:
        return
    limits = [as_id(value.get(key)) for key in ("current_limit", "old_limit")]
    parsed.emit(
        field,
        field,
        PhoneNumberQuality,
        **envelope(PhoneNumberQuality, value, waba_id, entry, parsed, [event, *limits]),
        waba_id=waba_id,
        display_phone_number=as_str(value.get("display_phone_number")),
        event=event,
        current_limit=limits[0],
        old_limit=limits[1],
        max_daily_conversations_per_business=as_id(
            value.get("max_daily_conversations_per_business")
        ),
    )


def name_update(value: Json, waba_id: str | None, entry: Json, parsed: Parsed) -> None:
    """Meta's decision on a number's requested display name."""
    field = "phone_number_name_update"
    decision = parsed.require(field, value, "decision")
    if decision is None:
        return
    requested = as_str(value.get("requested_verified_name"))
    parsed.emit(
        field,
        field,
        PhoneNumberName,
        **envelope(PhoneNumberName, value, waba_id, entry, parsed, [decision, requested]),
        waba_id=waba_id,
        display_phone_number=as_str(value.get("display_phone_number")),
        decision=decision,
        requested_verified_name=requested,
        rejection_reason=as_str(value.get("rejection_reason")),
    )


def unhandled(field: str, value: Any, waba_id: str | None, entry: Json, parsed: Parsed) -> None:
    """A field no model covers: its name and value as Meta sent them, never dropped."""
    parsed.emit(
        OTHER_FIELD,
        f"field {field!r}",
        UnhandledField,
        **envelope(UnhandledField, [field, value], waba_id, entry, parsed, [field]),
        waba_id=waba_id,
        field=field,
        value=value,
    )
