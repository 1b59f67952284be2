"""The pure parser: unit checks and hypothesis properties."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.encoding import MAX_PASSTHROUGH_DEPTH, encode, may_be_deep
from gateway.handlers import signature_valid, verify_subscription
from gateway.parser import Parsed, parse_in_steps, parse_webhook
from shared.events import (
    Event,
    InboundMessage,
    MessageStatus,
    TemplateStatusUpdate,
    WebhookErrors,
    parse_event,
)
from shared.send_ref import SendRef, tag
from shared.signals import SIGNALS, UnhandledField
from tests.gateway.payloads import (
    STATUSES,
    catalog,
    contact,
    dumps,
    message,
    mutated,
    paths,
    sign,
    status,
    value,
    webhook,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# What the gateway publishes for a WhatsApp webhook.
GATEWAY_EVENTS = {InboundMessage, MessageStatus, WebhookErrors, *SIGNALS}


def parse(payload: Any) -> list[Event]:
    return parse_webhook(payload, received_at=NOW).events


def roundtrip(events: list[Event]) -> list[Event]:
    """What a consumer reads: every event must serialise and parse back equal."""
    skipped: list[tuple[Event, str]] = []
    items = encode(events, skipped)
    back = [parse_event(item.event.type, item.body) for item in items]
    for item, parsed in zip(items, back, strict=True):
        assert parsed == item.event
    return back


# --------------------------------------------------------------------------- units


def test_catalog_types_map_to_fields() -> None:
    for name, meta_message, check in catalog():
        [event] = parse(webhook(value(contacts=[contact()], messages=[meta_message])))
        assert isinstance(event, InboundMessage), name
        check(event)


def test_ids_are_deterministic_and_distinct() -> None:
    payload = webhook(value(statuses=STATUSES))
    first = [e.event_id for e in parse(payload)]
    second = [e.event_id for e in parse(copy.deepcopy(payload))]
    assert first == second
    assert len(set(first)) == len(first)
    # The same status redelivered with the same timestamp is the same event.
    again = parse(webhook(value(statuses=[STATUSES[0], STATUSES[0]])))
    assert again[0].event_id == again[1].event_id
    # A message keeps its id whatever else changes in the webhook.
    a = parse(
        webhook(value(contacts=[contact()], messages=[message("wamid.x", "text", {"body": "a"})]))
    )
    b = parse(webhook(value(messages=[message("wamid.x", "text", {"body": "b"})])))
    assert a[0].event_id == b[0].event_id


def test_sender_takes_the_matching_contact_only() -> None:
    def sender(contacts: list[dict[str, Any]], **extra: Any) -> Any:
        meta_message = message("wamid.s", "text", {"body": "x"}, **extra)
        [event] = parse(webhook(value(contacts=contacts, messages=[meta_message])))
        assert isinstance(event, InboundMessage)
        return event.sender

    assert sender([contact()]).name == "Usuario"
    assert sender([contact("5491100000000", "Otro")]).name is None
    two = [contact("5491100000000", "Otro"), contact("5491135722871", "Usuario", user_id="AR.7")]
    assert (sender(two).name, sender(two).user_id) == ("Usuario", "AR.7")
    withheld = [contact(None, "Ana", user_id="AR.1")]
    assert sender(withheld, from_user_id="AR.2").name is None
    assert sender(withheld, from_user_id="AR.1").name == "Ana"


def test_numbers_where_strings_are_expected() -> None:
    meta_message = message("wamid.n", "text", {"body": "hi"}, sender=5491135722871)  # type: ignore[arg-type]
    meta_message["timestamp"] = 1750091045
    [event] = parse(webhook(value(contacts=[{"wa_id": 5491135722871}], messages=[meta_message])))
    assert isinstance(event, InboundMessage)
    assert event.sender.phone == "+5491135722871"
    assert event.timestamp == datetime.fromtimestamp(1750091045, UTC)


def test_missing_timestamp_uses_received_at_and_missing_id_is_skipped() -> None:
    meta_message = message("wamid.t", "text", {"body": "hi"})
    del meta_message["timestamp"]
    no_id = message("", "text", {"body": "lost"})
    parsed = parse_webhook(
        webhook(value(messages=[meta_message, no_id], statuses=[status("", "sent")])),
        received_at=NOW,
    )
    [event] = parsed.events
    assert isinstance(event, InboundMessage) and event.timestamp == NOW
    assert [skip.reason for skip in parsed.skips] == ["message #1 has no id", "status #0 has no id"]


def test_template_and_errors() -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba",
                "time": 1750000000,
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "REJECTED",
                            "message_template_id": 9,
                            "message_template_name": "t",
                            "message_template_language": "es",
                            "reason": "INVALID_FORMAT",
                        },
                    },
                    {
                        "field": "messages",
                        "value": value(errors=[{"code": "131000", "title": "x"}]),
                    },
                ],
            }
        ],
    }
    template, errors = parse(payload)
    assert isinstance(template, TemplateStatusUpdate)
    assert (template.event, template.reason, template.template_id) == (
        "REJECTED",
        "INVALID_FORMAT",
        "9",
    )
    assert template.occurred_at == datetime.fromtimestamp(1750000000, UTC)
    assert isinstance(errors, WebhookErrors) and errors.errors[0].code == 131000
    roundtrip([template, errors])


def test_signature_check() -> None:
    body = b'{"a": 1}'
    assert signature_valid(b"test-app-secret", body, sign(body))
    assert signature_valid(b"test-app-secret", body, sign(body).upper().replace("SHA256", "sha256"))
    assert not signature_valid(b"test-app-secret", body + b" ", sign(body))
    assert not signature_valid(b"test-app-secret", body, None)
    assert not signature_valid(b"test-app-secret", body, "sha256=\udcff")


def test_handshake_function() -> None:
    assert verify_subscription("tok", "subscribe", "tok", "c").status == 200
    assert verify_subscription("tok", "subscribe", "\ud800", "c").status == 403
    assert verify_subscription("tok", "subscribe", "tok", None).status == 403
    assert not signature_valid(b"s", b"x", "sha256=\ud800")


def test_depth_guard_only_walks_bracket_heavy_bodies() -> None:
    assert not may_be_deep(
        dumps(
            webhook(
                value(contacts=[contact()], messages=[message("wamid.x", "text", {"body": "a"})])
            )
        )
    )
    assert may_be_deep(b"[" * 200)


def test_depth_guard_reads_brackets_in_strings_as_text() -> None:
    # Brackets inside strings never nest, whether or not the body escapes a quote (two ways of
    # cutting the strings out); real nesting past the limit is found either way.
    texts = ["[" * 150, "]" * 150, "{" * 150]
    shallow = orjson.dumps({"items": [{"t": t} for t in texts] * 50})
    quoted = orjson.dumps({"items": [{"t": f'\\"{t}\\"'} for t in texts] * 50})
    assert b'\\"' not in shallow and b'\\"' in quoted
    assert not may_be_deep(shallow)
    assert not may_be_deep(quoted)
    for innermost in ("]]", '"[['):  # the second escapes a quote
        deep: dict[str, Any] = {"t": innermost}
        for _ in range(MAX_PASSTHROUGH_DEPTH + 1):
            deep = {"d": deep, "t": "]]"}
        assert may_be_deep(orjson.dumps(deep))


# --------------------------------------------------------------------------- properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    [
        "object",
        "entry",
        "id",
        "changes",
        "field",
        "value",
        "messages",
        "statuses",
        "errors",
        "contacts",
        "metadata",
        "phone_number_id",
        "from",
        "type",
        "text",
        "body",
        "timestamp",
        "status",
        "recipient_id",
        "interactive",
        "button_reply",
        "reaction",
        "emoji",
        "message_id",
        "location",
        "latitude",
        "longitude",
        "context",
        "edit",
        "message",
        "code",
        "wa_id",
        "user_id",
        "profile",
        "name",
        "image",
        "caption",
        "order",
        "system",
        "revoke",
        "event",
        "nfm_reply",
        "response_json",
        "list_reply",
        "button",
        "payload",
    ]
)
# Dictionaries with Meta's keys, so random values land where the parser looks.
meta_like = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(field_names, children, max_size=6)
    ),
    max_leaves=40,
)


def _with_object(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {**payload, "object": "whatsapp_business_account"}
    return payload


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, meta_like, meta_like.map(_with_object)))
def test_any_json_never_raises_and_events_are_readable(payload: Any) -> None:
    parsed = parse_webhook(payload, received_at=NOW)
    for event in parsed.events:
        assert type(event) in GATEWAY_EVENTS
    roundtrip(parsed.events)


BASE = webhook(
    value(contacts=[contact()], messages=[m for _, m, _ in catalog()]), value(statuses=STATUSES)
)
BASE_PATHS = paths(BASE)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(BASE_PATHS), meta_like), min_size=1, max_size=3))
def test_mutated_real_payloads_never_raise(mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    payload = mutated(BASE, mutations)
    parsed = parse_webhook(payload, received_at=NOW)
    roundtrip(parsed.events)
    # Every message or status that still has a string id is one event.
    expected = 0
    for change in _changes(payload):
        expected += sum(1 for item in _items(change) if isinstance(item, dict) and _has_id(item))
    # (A field the mutation renamed is published as it came, an UnhandledField.)
    updates = [e for e in parsed.events if not isinstance(e, WebhookErrors | UnhandledField)]
    assert len(updates) == expected


def _changes(payload: Any) -> list[Any]:
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        return []
    found = []
    entries = payload.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            if (
                isinstance(change, dict)
                and change.get("field") == "messages"
                and isinstance(change.get("value"), dict)
            ):
                found.append(change["value"])
    return found


def _items(change: dict[str, Any]) -> list[Any]:
    items: list[Any] = []
    for key in ("messages", "statuses"):
        if isinstance(change.get(key), list):
            items += change[key]
    return items


def _has_id(item: dict[str, Any]) -> bool:
    value_ = item.get("id")
    return (type(value_) is str and value_ != "") or type(value_) is int


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(range(len(catalog()))), st.text(min_size=1, max_size=30)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 4),
)
def test_batches_give_one_event_per_update(picks: list[tuple[int, str]], entries: int) -> None:
    items = catalog()
    messages = []
    for n, (index, suffix) in enumerate(picks):
        meta_message = copy.deepcopy(items[index][1])
        meta_message["id"] = f"wamid.{n}.{suffix}"
        messages.append(meta_message)
    values = [value(contacts=[contact()], messages=messages[i::3]) for i in range(3)]
    events = parse(webhook(*[v for v in values if v["messages"]], entries=entries))
    assert sorted(e.wamid for e in events if isinstance(e, InboundMessage)) == sorted(
        m["id"] for m in messages
    )
    assert len({e.event_id for e in events}) == len(messages)


def test_a_status_names_the_senders_command_and_keeps_the_callers_data() -> None:
    ref = tag(SendRef("cmd-7", 2), "order-42")
    plain = status("wamid.a", "sent", biz_opaque_callback_data="order-42")
    tagged = status("wamid.b", "delivered", biz_opaque_callback_data=ref)
    [first, second] = parse(webhook(value(statuses=[plain, tagged])))
    assert isinstance(first, MessageStatus) and isinstance(second, MessageStatus)
    assert (first.command_id, first.send_attempt) == (None, None)
    assert first.biz_opaque_callback_data == "order-42"
    assert (second.command_id, second.send_attempt) == ("cmd-7", 2)
    assert second.biz_opaque_callback_data == "order-42"


def test_a_large_change_is_read_in_steps_into_the_same_events() -> None:
    # The gateway publishes a large webhook's events as it reads them: the parser pauses every
    # `every` messages or statuses of a change, and after each change.
    messages = [message(f"wamid.step.m{n}", "text", {"body": f"hola {n}"}) for n in range(120)]
    statuses = [status(f"wamid.step.s{n}", "delivered") for n in range(130)]
    payload = webhook(
        value(messages=messages, statuses=statuses), value(statuses=[status("wamid.x", "read")])
    )
    parsed = Parsed(NOW)
    seen = [len(parsed.events) for _ in parse_in_steps(payload, parsed, every=100)]
    assert seen == [100, 200, 250, 251]
    assert parsed.events == parse_webhook(payload, received_at=NOW).events
