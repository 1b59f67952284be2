"""Webhook payloads for the gateway's tests: Meta's official examples (in ``data/``) and builders
for every message type and status in CLOUD-API-NOTES, shaped like Meta's examples."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.events import InboundMessage

DATA = Path(__file__).parent / "data"
PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "419561257915477"
SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"

Json = dict[str, Any]


def example(name: str) -> Json:
    return json.loads((DATA / f"{name}.json").read_text())  # type: ignore[no-any-return]


META_EXAMPLES = sorted(p.stem for p in DATA.glob("*.json") if not p.stem.startswith("group_"))


def paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a JSON value (keys and indexes), outermost first."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += paths(child, (*path, index))
    return found


def mutated(payload: Any, mutations: list[tuple[tuple[Any, ...], Any]]) -> Any:
    """A copy of ``payload`` with the value at each path replaced (a path an earlier
    replacement removed is passed over)."""
    changed = copy.deepcopy(payload)
    for path, replacement in mutations:
        node = changed
        try:
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = replacement
        except (KeyError, IndexError, TypeError):
            continue
    return changed


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def contact(wa_id: str | None = "5491135722871", name: str = "Usuario", **extra: Any) -> Json:
    item: Json = {"profile": {"name": name}, **extra}
    if wa_id is not None:
        item["wa_id"] = wa_id
    return item


def value(
    *,
    messages: list[Json] | None = None,
    statuses: list[Json] | None = None,
    contacts: list[Json] | None = None,
    errors: list[Json] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> Json:
    body: Json = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        body["contacts"] = contacts
    if messages is not None:
        body["messages"] = messages
    if statuses is not None:
        body["statuses"] = statuses
    if errors is not None:
        body["errors"] = errors
    return body


def webhook(*values: Json, field: str = "messages", entries: int = 1) -> Json:
    """One payload; with ``entries`` > 1 the values are spread over that many entries."""
    changes = [{"value": v, "field": field} for v in values]
    groups: list[list[Json]] = [changes[i::entries] for i in range(entries)]
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": group} for group in groups if group],
    }


def message(
    wamid: str, kind: str, body: Any = None, *, sender: str = "5491135722871", **extra: Any
) -> Json:
    item: Json = {"from": sender, "id": wamid, "timestamp": "1750091045", "type": kind, **extra}
    if body is not None:
        item[kind] = body
    return item


def status(wamid: str, name: str, timestamp: str = "1750091100", **extra: Any) -> Json:
    return {
        "id": wamid,
        "status": name,
        "timestamp": timestamp,
        "recipient_id": "5491135722871",
        **extra,
    }


Check = Callable[[InboundMessage], None]


def _media(kind: str, **fields: Any) -> tuple[Json, Check]:
    body = {"id": f"media-{kind}", "mime_type": "x/y", "sha256": "abc", **fields}

    def check(event: InboundMessage) -> None:
        assert event.media is not None
        assert event.media.id == f"media-{kind}"
        assert event.text == fields.get("caption")
        for name, expected in fields.items():
            assert getattr(event.media, name) == expected

    return body, check


def catalog() -> list[tuple[str, Json, Check]]:
    """Every message type: (name, message object with a unique wamid, field checks)."""
    items: list[tuple[str, Json, Check]] = []

    def add(name: str, kind: str, body: Any, check: Check, **extra: Any) -> None:
        items.append((name, message(f"wamid.{name}", kind, body, **extra), check))

    def text_check(expected: str | None) -> Check:
        def check(event: InboundMessage) -> None:
            assert event.text == expected

        return check

    add("text", "text", {"body": "Hola"}, text_check("Hola"))
    media_cases: list[tuple[str, dict[str, Any]]] = [
        ("image", {"caption": "una foto"}),
        ("video", {"caption": "un video"}),
        ("audio", {"voice": True}),
        ("document", {"caption": "factura", "filename": "f.pdf"}),
        ("sticker", {"animated": False}),
    ]
    for kind, extra in media_cases:
        body, check = _media(kind, **extra)
        add(kind, kind, body, check)

    def location(event: InboundMessage) -> None:
        assert event.location is not None
        assert (event.location.latitude, event.location.longitude) == (-34.6, -58.4)
        assert event.location.name == "Obelisco"

    add(
        "location",
        "location",
        {"latitude": -34.6, "longitude": -58.4, "name": "Obelisco"},
        location,
    )

    def contacts(event: InboundMessage) -> None:
        assert event.contacts and event.contacts[0]["name"]["formatted_name"] == "Lucía Gómez"

    add("contacts", "contacts", [{"name": {"formatted_name": "Lucía Gómez"}}], contacts)

    def button_reply(event: InboundMessage) -> None:
        assert event.reply is not None
        assert (event.reply.kind, event.reply.id, event.reply.title) == (
            "button_reply",
            "agente",
            "Hablar con agente",
        )
        assert event.text == "Hablar con agente"
        assert event.context is not None and event.context.message_id == "wamid.quoted"

    add(
        "button_reply",
        "interactive",
        {"type": "button_reply", "button_reply": {"id": "agente", "title": "Hablar con agente"}},
        button_reply,
        context={"from": "15550783881", "id": "wamid.quoted"},
    )

    def list_reply(event: InboundMessage) -> None:
        assert event.reply is not None
        assert (event.reply.kind, event.reply.id, event.reply.description) == (
            "list_reply",
            "row-1",
            "Mañana",
        )
        assert event.text == "Envío express"

    add(
        "list_reply",
        "interactive",
        {
            "type": "list_reply",
            "list_reply": {"id": "row-1", "title": "Envío express", "description": "Mañana"},
        },
        list_reply,
    )

    def flow(event: InboundMessage) -> None:
        assert event.reply is not None and event.reply.kind == "nfm_reply"
        assert event.reply.response_json == '{"flow_token": "t", "plan": "premium"}'
        assert event.reply.id == "flow"

    add(
        "flow_reply",
        "interactive",
        {
            "type": "nfm_reply",
            "nfm_reply": {
                "name": "flow",
                "body": "Sent",
                "response_json": '{"flow_token": "t", "plan": "premium"}',
            },
        },
        flow,
    )

    def template_button(event: InboundMessage) -> None:
        assert event.reply is not None
        assert (event.reply.kind, event.reply.id, event.reply.title) == (
            "template_button",
            "STOP_PROMOS",
            "Dejar de recibir",
        )
        assert event.text == "Dejar de recibir"

    add(
        "template_button",
        "button",
        {"payload": "STOP_PROMOS", "text": "Dejar de recibir"},
        template_button,
        context={"from": "15550783881", "id": "wamid.template"},
    )

    def reaction(event: InboundMessage) -> None:
        assert event.reaction is not None
        assert (event.reaction.message_id, event.reaction.emoji) == ("wamid.liked", "👍")

    add("reaction", "reaction", {"message_id": "wamid.liked", "emoji": "👍"}, reaction)

    def unreaction(event: InboundMessage) -> None:
        assert event.reaction is not None
        assert (event.reaction.message_id, event.reaction.emoji) == ("wamid.liked", None)

    add("reaction_removed", "reaction", {"message_id": "wamid.liked", "emoji": ""}, unreaction)

    def order(event: InboundMessage) -> None:
        assert event.order is not None and event.order["catalog_id"] == "cat-1"
        assert event.text == "para el viernes"

    add(
        "order",
        "order",
        {
            "catalog_id": "cat-1",
            "text": "para el viernes",
            "product_items": [
                {"product_retailer_id": "p1", "quantity": 2, "item_price": 30, "currency": "ARS"}
            ],
        },
        order,
    )

    # A system message of a type Mensajero does not model (Meta adds types without notice; the
    # identity changes are IdentityChanged events: see identity_messages()).
    def system(event: InboundMessage) -> None:
        assert event.system is not None and event.system["type"] == "user_changed_profile"
        assert event.text is None

    add(
        "system",
        "system",
        {"body": "User changed their profile", "type": "user_changed_profile"},
        system,
    )

    def edit(event: InboundMessage) -> None:
        assert event.message_type == "edit"
        assert event.original_message_id == "wamid.original"
        assert event.text == "Hola, corregido"

    add(
        "edit",
        "edit",
        {
            "original_message_id": "wamid.original",
            "message": {"type": "text", "text": {"body": "Hola, corregido"}},
        },
        edit,
    )

    def revoke(event: InboundMessage) -> None:
        assert event.message_type == "revoke"
        assert event.original_message_id == "wamid.deleted"

    add("revoke", "revoke", {"original_message_id": "wamid.deleted"}, revoke)

    def referral(event: InboundMessage) -> None:
        assert event.referral is not None and event.referral["source_id"] == "ad-1"
        assert event.text == "Info please"

    add(
        "referral",
        "text",
        {"body": "Info please"},
        referral,
        referral={"source_url": "https://fb.me/x", "source_id": "ad-1", "source_type": "ad"},
    )

    def forwarded(event: InboundMessage) -> None:
        assert event.context is not None
        assert event.context.forwarded and event.context.frequently_forwarded

    add(
        "forwarded",
        "text",
        {"body": "reenviado"},
        forwarded,
        context={"forwarded": True, "frequently_forwarded": True},
    )

    def unsupported(event: InboundMessage) -> None:
        assert event.message_type == "unsupported"
        assert event.errors and event.errors[0].code == 131051
        assert event.errors[0].details == "Message type is currently not supported."

    add(
        "unsupported",
        "unsupported",
        None,
        unsupported,
        errors=[
            {
                "code": 131051,
                "title": "Message type unknown",
                "error_data": {"details": "Message type is currently not supported."},
            }
        ],
    )

    def never_seen(event: InboundMessage) -> None:
        assert event.message_type == "unsupported"
        assert event.raw["type"] == "hologram"
        assert event.raw["hologram"] == {"depth": 3}

    add("never_seen", "hologram", {"depth": 3}, never_seen)
    return items


STATUSES: list[Json] = [
    status(
        "wamid.out1",
        "sent",
        "1750091100",
        pricing={"billable": True, "pricing_model": "PMP", "category": "utility"},
        conversation={"id": "conv-1", "origin": {"type": "utility"}},
        biz_opaque_callback_data="cmd-123",
    ),
    status("wamid.out1", "delivered", "1750091101"),
    status("wamid.out1", "read", "1750091102"),
    status(
        "wamid.out2",
        "failed",
        "1750091103",
        errors=[
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {"details": "More than 24 hours have passed"},
            }
        ],
    ),
    status("wamid.out3", "played", "1750091104"),
]


# --------------------------------------------------------------------------- the other fields

BSUID = "AR.13491208655302741918"
ACCOUNT_TIME = 1750091200


def number_value(**items: Any) -> Json:
    """A number-level change's value (``metadata`` and the field's own lists)."""
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        **items,
    }


def signal_changes() -> list[tuple[str, Json]]:
    """One change of each field besides ``messages`` (and its system messages), in the shapes
    of Meta's reference pages as sandbox/README.md lists them. Benign values: these also go
    through every consumer in the poison corpus (tests/system/test_poison.py)."""
    customer = {
        "profile": {"name": "Ana", "username": "ana"},
        "wa_id": "5491135722871",
        "user_id": BSUID,
    }
    echo = {
        "from": "15550783881",
        "to": "5491135722871",
        "to_user_id": BSUID,
        "id": "wamid.echo1",
        "timestamp": "1750091045",
        "type": "text",
        "text": {"body": "Te atiendo yo"},
    }
    history = {
        "metadata": {"phase": 0, "chunk_order": 1, "progress": 100},
        "threads": [
            {
                "id": "5491135722871",
                "context": {"wa_id": "5491135722871", "user_id": BSUID},
                "messages": [
                    {
                        "from": "5491135722871",
                        "from_user_id": BSUID,
                        "id": "wamid.h1",
                        "timestamp": "1750000000",
                        "type": "text",
                        "text": {"body": "Hola"},
                        "history_context": {"status": "READ"},
                    }
                ],
            }
        ],
    }
    sync = {
        "type": "contact",
        "action": "add",
        "metadata": {"timestamp": "1750091045"},
        "contact": {
            "full_name": "Ana Gómez",
            "first_name": "Ana",
            "phone_number": "5491135722871",
            "user_id": BSUID,
        },
    }
    preference = {
        "wa_id": "5491135722871",
        "user_id": BSUID,
        "category": "marketing_messages",
        "value": "resume",
        "detail": "User requested to resume marketing messages",
        "timestamp": 1750091045,
    }
    user_id_update = {
        "wa_id": "5491135722871",
        "detail": "User id updated.",
        "user_id": {"previous": BSUID, "current": "AR.55555555555555555555"},
        "timestamp": "1750091045",
    }
    call = {
        "id": "wacid.c1",
        "from": "5491135722871",
        "from_user_id": BSUID,
        "to": "15550783881",
        "event": "connect",
        "timestamp": "1750091045",
        "direction": "USER_INITIATED",
        "session": {"sdp_type": "offer", "sdp": "v=0"},
    }
    call_status = {
        "id": "wacid.c2",
        "timestamp": "1750091046",
        "type": "call",
        "status": "RINGING",
        "recipient_id": "5491135722871",
        "recipient_user_id": BSUID,
    }
    template = {
        "message_template_id": 7,
        "message_template_name": "promo",
        "message_template_language": "es_AR",
    }
    return [
        ("smb_message_echoes", number_value(contacts=[customer], message_echoes=[echo])),
        ("history", number_value(history=[history])),
        ("smb_app_state_sync", number_value(state_sync=[sync])),
        ("user_preferences", number_value(contacts=[customer], user_preferences=[preference])),
        ("user_id_update", number_value(contacts=[customer], user_id_update=[user_id_update])),
        ("calls", number_value(contacts=[customer], calls=[call], statuses=[call_status])),
        (
            "account_update",
            {"event": "PARTNER_ADDED", "waba_info": {"waba_id": WABA_ID, "owner_business_id": "3"}},
        ),
        (
            "phone_number_quality_update",
            {
                "display_phone_number": "15550783881",
                "event": "UPGRADE",
                "old_limit": "TIER_2K",
                "current_limit": "TIER_10K",
            },
        ),
        (
            "phone_number_name_update",
            {
                "display_phone_number": "15550783881",
                "decision": "APPROVED",
                "requested_verified_name": "Demo",
            },
        ),
        (
            "message_template_quality_update",
            {**template, "previous_quality_score": "YELLOW", "new_quality_score": "GREEN"},
        ),
        (
            "template_category_update",
            {
                **template,
                "new_category": "UTILITY",
                "correct_category": "UTILITY",
                "category_update_timestamp": ACCOUNT_TIME,
            },
        ),
        (
            "message_template_components_update",
            {**template, "message_template_element": "Hola {{1}}"},
        ),
        ("business_capability_update", {"max_daily_conversations_per_business": 1000}),
    ]


def identity_messages() -> list[Json]:
    """The system messages about a customer's identity (no contacts: Meta sends none)."""
    changed_number = message(
        "wamid.sys1",
        "system",
        {
            "body": "User Ana changed from 5491135722871 to 5491144445555",
            "wa_id": "5491144445555",
            "user_id": "AR.66666666666666666666",
            "type": "user_changed_number",
        },
        from_user_id=BSUID,
    )
    changed_user_id = message(
        "wamid.sys2",
        "system",
        {
            "body": f"User Ana changed from {BSUID} to AR.77777777777777777777",
            "user_id": "AR.77777777777777777777",
            "type": "user_changed_user_id",
        },
        from_user_id=BSUID,
    )
    del changed_user_id["from"]
    new_identity = message(
        "wamid.sys3",
        "system",
        {"body": "User identity changed", "type": "customer_identity_changed"},
        from_user_id=BSUID,
        identity={"acknowledged": True, "created_timestamp": "1750091045", "hash": "ab12"},
    )
    return [changed_number, changed_user_id, new_identity]


def account_webhook(*changes: tuple[str, Json], time: int = ACCOUNT_TIME) -> Json:
    """Account-level changes in one entry with its ``time``."""
    entry = {"id": WABA_ID, "time": time, "changes": [{"field": f, "value": v} for f, v in changes]}
    return {"object": "whatsapp_business_account", "entry": [entry]}
