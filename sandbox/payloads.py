"""Meta's webhook shapes that every kind shares: the envelopes, contacts and status items.

Two envelopes: fields about one business number (`messages`, `smb_message_echoes`, `history`,
`calls`, ...) carry `messaging_product` and `metadata` in their value; fields about the account
(`account_update`, templates, `phone_number_*`) carry only their own keys and an `entry[].time`.
Identifiers follow Meta's business-scoped user ids page: `user_id` always, `wa_id` only when the
phone may be shown, `parent_user_id` when the person has one.
"""

from __future__ import annotations

from typing import Any

from sandbox.config import SandboxConfig
from sandbox.people import Person


def metadata(config: SandboxConfig) -> dict[str, str]:
    return {
        "display_phone_number": config.display_digits,
        "phone_number_id": config.phone_number_id,
    }


def envelope(config: SandboxConfig, field: str = "messages", **value: Any) -> dict[str, Any]:
    """`{"object": "whatsapp_business_account", "entry": [...]}` around one number's change."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": config.waba_id,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": metadata(config),
                            **value,
                        },
                        "field": field,
                    }
                ],
            }
        ],
    }


def account_envelope(
    config: SandboxConfig, field: str, value: dict[str, Any], now: float
) -> dict[str, Any]:
    """The envelope of an account-level field: `entry[].time` and the value as it is."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": config.waba_id,
                "time": int(now),
                "changes": [{"value": value, "field": field}],
            }
        ],
    }


def contact(
    person: Person, *, name: bool = True, username: bool = True, phone: bool | None = None
) -> dict[str, Any]:
    """An entry of `contacts[]`; `phone=None` shows the phone when the person lets it be seen."""
    profile: dict[str, Any] = {}
    if name:
        profile["name"] = person.name
    if username and person.username:
        profile["username"] = person.username
    found: dict[str, Any] = {}
    if profile:
        found["profile"] = profile
    shown = person.visible_phone if phone is None else (person.phone if phone else None)
    if shown:
        found["wa_id"] = shown.lstrip("+")
    found["user_id"] = person.user_id
    if person.parent_user_id:
        found["parent_user_id"] = person.parent_user_id
    return found


def user_ids(person: Person, prefix: str) -> dict[str, str]:
    """`{prefix}user_id` and `{prefix}parent_user_id` (e.g. `from_`, `to_`, `recipient_`)."""
    found = {f"{prefix}user_id": person.user_id}
    if person.parent_user_id:
        found[f"{prefix}parent_user_id"] = person.parent_user_id
    return found


def recipient_fields(person: Person, *, to_phone: bool, failed: bool) -> dict[str, str]:
    """How a status names its recipient: by phone when sent to it or visible, by BSUID always
    (but a `failed` status of a send to a phone has no `recipient_user_id`)."""
    found: dict[str, str] = {}
    phone = person.phone.lstrip("+") if to_phone and person.phone else person.visible_phone
    if phone:
        found["recipient_id"] = phone
    if not (failed and to_phone):
        found.update(user_ids(person, "recipient_"))
    return found


def status_item(
    wamid: str,
    status: str,
    recipient: dict[str, str],
    *,
    conversation: dict[str, Any] | None = None,
    pricing: dict[str, Any] | None = None,
    biz_opaque_callback_data: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One entry of `statuses[]`; its `timestamp` is filled in when it is posted."""
    item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": "", **recipient}
    if conversation is not None:
        item["conversation"] = conversation
    if pricing is not None:
        item["pricing"] = pricing
    if biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    if errors is not None:
        item["errors"] = errors
    return item
