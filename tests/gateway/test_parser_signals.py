"""The parser on every field besides customers' plain messages: shapes, edge cases, properties.

The sandbox's own builders (``sandbox.emit.build``) give the shapes of every kind it can emit;
hand-written payloads (tests/gateway/payloads.py) and their mutations give the edges.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.encoding import encode
from gateway.parser import FIELDS, NO_FIELD, OTHER_FIELD, Parsed, field_of, parse_webhook
from sandbox import emit
from sandbox.state import SandboxState
from sandbox.templates import load_templates
from shared.catalog import FLOWS
from shared.events import Event, InboundMessage, MessageStatus, parse_event
from shared.signals import (
    AccountUpdate,
    CallEvent,
    CallStatus,
    ContactsSynced,
    HistoryChunk,
    IdentityChanged,
    MessageEcho,
    PhoneNumberName,
    PhoneNumberQuality,
    PreferenceChanged,
    TemplateCategoryUpdate,
    TemplateComponentsUpdate,
    TemplateQualityUpdate,
    UnhandledField,
)
from tests.gateway.payloads import (
    ACCOUNT_TIME,
    BSUID,
    WABA_ID,
    account_webhook,
    contact,
    identity_messages,
    message,
    mutated,
    number_value,
    paths,
    signal_changes,
    status,
    value,
    webhook,
)
from tests.sandbox.support import make_config

NOW = datetime(2025, 6, 20, tzinfo=UTC)

# The event each field's change above becomes.
EXPECTED: dict[str, list[type[Event]]] = {
    "smb_message_echoes": [MessageEcho],
    "history": [HistoryChunk],
    "smb_app_state_sync": [ContactsSynced],
    "user_preferences": [PreferenceChanged],
    "user_id_update": [IdentityChanged],
    "calls": [CallEvent, CallStatus],
    "account_update": [AccountUpdate],
    "phone_number_quality_update": [PhoneNumberQuality],
    "phone_number_name_update": [PhoneNumberName],
    "message_template_quality_update": [TemplateQualityUpdate],
    "template_category_update": [TemplateCategoryUpdate],
    "message_template_components_update": [TemplateComponentsUpdate],
    "business_capability_update": [UnhandledField],
}


def parse(payload: Any) -> Parsed:
    return parse_webhook(payload, received_at=NOW)


def one_field(field: str, item: dict[str, Any]) -> Any:
    if "messaging_product" in item:
        return webhook(item, field=field)
    return account_webhook((field, item))


def roundtrip(events: list[Event]) -> None:
    """What a consumer reads: every event serialises and parses back equal."""
    problems: list[tuple[Event, str]] = []
    for item in encode(events, problems):
        assert parse_event(item.event.type, item.body) == item.event
    assert problems == []


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(("field", "item"), signal_changes(), ids=[f for f, _ in signal_changes()])
def test_each_field_becomes_its_events(field: str, item: dict[str, Any]) -> None:
    parsed = parse(one_field(field, item))
    assert parsed.skips == [] and parsed.ignored == []
    assert [type(e) for e in parsed.events] == EXPECTED[field]
    roundtrip(parsed.events)
    assert {field_of(e) for e in parsed.events} == {field if field in FIELDS else OTHER_FIELD}


def test_every_sandbox_kind_parses_without_a_skip() -> None:
    """Each webhook the sandbox can emit (sandbox/README.md) is read whole by the gateway."""
    state = SandboxState(make_config(), load_templates(None))
    requests: list[dict[str, Any]] = [{"field": f} for f in emit.FIELDS]
    requests += [{"field": "messages", "type": kind} for kind in emit.MESSAGE_TYPES]
    requests += [{"field": "calls", "event": e} for e in ("terminate", "status")]
    requests += [{"field": "history", "declined": True}, {"field": "x_new", "raw": {"a": 1}}]
    for request in requests:
        model = None if "raw" in request else emit._builder(request)[0]
        if model is not None and "customer" in model.model_fields:
            request["customer"] = "+5491135722871"
        if model is not None and "name" in model.model_fields:
            request.update(name="hello_world", language="en_US")
        if request.get("type") == "user_changed_number":
            request["new_phone"] = "+5491144445555"
        _field, (payload, _extras) = emit.build(state, request)
        parsed = parse_webhook(payload, received_at=datetime.now(UTC))
        assert parsed.skips == [], (request, parsed.skips)
        assert len(parsed.events) == 1, (request, parsed.events)
        assert not isinstance(parsed.events[0], MessageStatus), request
        roundtrip(parsed.events)


def test_identity_system_messages_are_not_messages() -> None:
    parsed = parse(webhook(value(messages=identity_messages())))
    number, user_id, new_identity = parsed.events
    assert isinstance(number, IdentityChanged) and number.change == "user_changed_number"
    assert (number.previous.phone, number.previous.user_id) == ("+5491135722871", BSUID)
    assert (number.current.phone, number.current.user_id) == (
        "+5491144445555",
        "AR.66666666666666666666",
    )
    assert isinstance(user_id, IdentityChanged) and user_id.change == "user_changed_user_id"
    assert (user_id.previous.user_id, user_id.current.user_id) == (
        BSUID,
        "AR.77777777777777777777",
    )
    assert user_id.current.phone is None
    assert isinstance(new_identity, IdentityChanged)
    assert new_identity.previous == new_identity.current
    assert new_identity.current.user_id == BSUID
    assert not [e for e in parsed.events if isinstance(e, InboundMessage)]
    roundtrip(parsed.events)


def test_previous_ids_meta_names_in_the_system_object_win() -> None:
    """Since August 2026 Meta adds ``system.previous_user_id`` (and the parent's)."""
    changed = message(
        "wamid.p",
        "system",
        {
            "body": "User changed",
            "user_id": "AR.2",
            "parent_user_id": "AR.ENT.2",
            "previous_user_id": "AR.1",
            "previous_parent_user_id": "AR.ENT.1",
            "type": "user_changed_user_id",
        },
        from_user_id="AR.stale",
    )
    [event] = parse(webhook(value(messages=[changed]))).events
    assert isinstance(event, IdentityChanged)
    assert (event.previous.user_id, event.previous.parent_user_id) == ("AR.1", "AR.ENT.1")
    assert (event.current.user_id, event.current.parent_user_id) == ("AR.2", "AR.ENT.2")
    assert (event.current.phone, event.previous.phone) == ("+5491135722871",) * 2


def test_a_system_message_of_another_kind_stays_a_message() -> None:
    other = message("wamid.o", "system", {"body": "x", "type": "customer_changed_number"})
    [event] = parse(webhook(value(messages=[other]))).events
    assert isinstance(event, InboundMessage) and event.system == {
        "body": "x",
        "type": "customer_changed_number",
    }


def test_statuses_take_the_username_from_their_contacts() -> None:
    delivered = status("wamid.d", "delivered", recipient_user_id=BSUID)
    del delivered["recipient_id"]
    contacts = [contact(None, "Ana", user_id=BSUID) | {"profile": {"username": "ana"}}]
    [event] = parse(webhook(value(contacts=contacts, statuses=[delivered]))).events
    assert isinstance(event, MessageStatus)
    assert (event.recipient.user_id, event.recipient.username) == (BSUID, "ana")


def test_call_permission_reply() -> None:
    expires = int((NOW + timedelta(days=7)).timestamp())
    reply = {"response": "accept", "expiration_timestamp": expires, "response_source": "automatic"}
    tap = {"type": "call_permission_reply", "call_permission_reply": reply}
    [event] = parse(webhook(value(messages=[message("wamid.c", "interactive", tap)]))).events
    assert isinstance(event, InboundMessage) and event.text is None
    assert event.call_permission is not None
    assert event.call_permission.expires_at == datetime.fromtimestamp(expires, UTC)
    assert event.call_permission.response_source == "automatic"
    reply.update(expiration_timestamp="10" * 6, response="reject")  # a time no clock has
    [later] = parse(webhook(value(messages=[message("wamid.r", "interactive", tap)]))).events
    assert isinstance(later, InboundMessage) and later.call_permission is not None
    assert (later.call_permission.response, later.call_permission.expires_at) == ("reject", None)


def test_account_level_ids_follow_the_content() -> None:
    payload = account_webhook(*[(f, v) for f, v in signal_changes() if "metadata" not in v])
    first = [e.event_id for e in parse(payload).events]
    assert first == [e.event_id for e in parse(copy.deepcopy(payload)).events]
    assert len(set(first)) == len(first)
    later = account_webhook(*[(f, v) for f, v in signal_changes() if "metadata" not in v], time=1)
    assert not set(first) & {e.event_id for e in parse(later).events}
    [update] = parse(account_webhook(("account_update", {"event": "PARTNER_ADDED"}))).events
    assert update.occurred_at == datetime.fromtimestamp(ACCOUNT_TIME, UTC)


def test_a_category_change_made_and_announced() -> None:
    made = {
        "message_template_name": "t",
        "previous_category": "UTILITY",
        "new_category": "MARKETING",
    }
    announced = {
        "message_template_name": "t",
        "new_category": "UTILITY",
        "correct_category": "MARKETING",
        "category_update_timestamp": "x",
    }
    first, second = parse(
        account_webhook(("template_category_update", made), ("template_category_update", announced))
    ).events
    assert isinstance(first, TemplateCategoryUpdate) and first.made_marketing
    assert isinstance(second, TemplateCategoryUpdate) and second.made_marketing
    assert (second.previous_category, second.effective_at) == ("UTILITY", None)


# --------------------------------------------------------------------------- edges


@pytest.mark.parametrize(
    ("field", "item", "reason"),
    [
        ("account_update", {"waba_info": {}}, "without event"),
        ("phone_number_quality_update", {"event": ["DOWNGRADE"]}, "without event"),
        ("phone_number_name_update", {"decision": None}, "without decision"),
        ("message_template_status_update", {"event": ""}, "without event"),
        ("message_template_quality_update", {"previous_quality_score": "RED"}, "without new"),
        ("template_category_update", {"previous_category": "UTILITY"}, "without new_category"),
        ("user_preferences", number_value(user_preferences=[{"value": "stop"}]), "lacks"),
        ("user_preferences", number_value(user_preferences=["stop"]), "not an object"),
        ("user_id_update", number_value(user_id_update=[{"user_id": "AR.1"}]), "lacks"),
        ("calls", number_value(calls=[{"id": "wacid.1"}]), "has no event"),
        ("calls", number_value(calls=[{"event": "connect"}]), "has no id"),
        ("calls", number_value(statuses=[{"id": "w", "type": "message", "status": "read"}]), "not"),
        ("smb_message_echoes", number_value(message_echoes=[{"type": "text"}]), "has no id"),
        ("history", number_value(history=[{"metadata": {"phase": 1}}]), "neither"),
        ("history", number_value(history=[[]]), "not an object"),
        ("smb_app_state_sync", number_value(state_sync=[{"type": "label"}]), "not modelled"),
        ("smb_app_state_sync", number_value(state_sync=[{"type": "contact"}]), "names nobody"),
    ],
)
def test_updates_that_cannot_be_events_are_skipped_by_field(
    field: str, item: dict[str, Any], reason: str
) -> None:
    parsed = parse(one_field(field, item))
    assert parsed.events == []
    [skip] = parsed.skips
    assert skip.field == field and reason in skip.reason, skip


def test_identity_messages_that_name_nobody_are_skipped() -> None:
    lost = message("wamid.l", "system", {"body": "?", "type": "user_changed_number"})
    del lost["from"]
    parsed = parse(webhook(value(messages=[lost])))
    assert parsed.events == []
    [skip] = parsed.skips
    assert skip.field == "messages" and "does not name the customer" in skip.reason


def test_fields_without_a_parser_are_published_whatever_their_value() -> None:
    entry = {
        "id": WABA_ID,
        "changes": [
            {"field": "new_field", "value": [1, {"a": None}]},
            {"field": "other_new", "value": None},
            {"value": {"a": 1}},
            {"field": "x" * 300, "value": {}},
            {"field": "messages", "value": "not an object"},
        ],
    }
    parsed = parse({"object": "whatsapp_business_account", "entry": [entry]})
    first, second = parsed.events
    assert isinstance(first, UnhandledField) and (first.field, first.value) == (
        "new_field",
        [1, {"a": None}],
    )
    assert isinstance(second, UnhandledField) and second.value is None
    assert [s.field for s in parsed.skips] == [NO_FIELD, OTHER_FIELD, "messages"]
    roundtrip(parsed.events)


def test_every_event_the_gateway_makes_has_a_source_field() -> None:
    produced = {t for t, (producer, _) in FLOWS.items() if producer == "gateway"}
    webhook_types = {t for t in produced if t.startswith("whatsapp.")}
    from gateway.parser import _SOURCES

    assert webhook_types == {*_SOURCES, UnhandledField.TYPE}


# --------------------------------------------------------------------------- properties

BASE = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": WABA_ID,
            "time": ACCOUNT_TIME,
            "changes": [{"field": f, "value": v} for f, v in signal_changes()],
        },
        {
            "id": WABA_ID,
            "changes": [{"field": "messages", "value": value(messages=identity_messages())}],
        },
    ],
}
BASE_PATHS = paths(BASE)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["connect", "contact", "user_changed_number", "BUSINESS_INITIATED", "call"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["id", "type", "event", "user_id", "wa_id"]), children)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(BASE_PATHS), json_values), min_size=1, max_size=4))
def test_mutated_signals_never_raise_and_stay_readable(
    mutations: list[tuple[tuple[Any, ...], Any]],
) -> None:
    parsed = parse_webhook(mutated(BASE, mutations), received_at=NOW)
    problems: list[tuple[Event, str]] = []
    for item in encode(parsed.events, problems):
        assert parse_event(item.event.type, item.body) == item.event
