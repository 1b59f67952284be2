"""One customer, whichever identifier addresses them (unit, over the fakes): the pair limit, the
backoff and the conversation's order key; and the signals' handlers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sender.handlers import conversation_key, on_status
from sender.sending import handle_send
from sender.signals import (
    on_account,
    on_identity,
    on_preference,
    on_template_category,
    on_template_status,
)
from shared.bus import Delivery, RetryLater
from shared.events import Identity, MessageFailed, MessageSent, MessageStatus, SendMessage
from shared.signals import (
    AccountUpdate,
    IdentityChanged,
    PreferenceChanged,
    TemplateCategoryUpdate,
    TemplateStatusUpdate,
)
from tests.fakes.sender import meta_error
from tests.sender.fakes import NUMBER, TO, World, text

BSUID = "AR.13491208655302741918"
DELIVERY = Delivery(attempt=1, redelivered=False)


def promo(**kw: object) -> SendMessage:
    content = {"kind": "template", "name": "promo_verano", "language": "es_AR"}
    return SendMessage.model_validate({"to": TO, "content": content, **kw})


async def test_a_command_naming_both_makes_them_one_customer_for_the_pair_limit() -> None:
    w = World()
    assert conversation_key(w.deps, text(to=BSUID)) != conversation_key(w.deps, text())
    await handle_send(w.deps, text(to=BSUID, to_phone=TO))
    assert w.graph.sent[0][1]["recipient"] == BSUID and "to" not in w.graph.sent[0][1]
    assert conversation_key(w.deps, text(to=BSUID)) == conversation_key(w.deps, text())
    for n in range(44):
        await handle_send(w.deps, text(to=BSUID if n % 2 else TO))
    with pytest.raises(RetryLater, match="pair limit"):
        await handle_send(w.deps, text(to=BSUID))  # the 46th to the same person
    assert len(w.graph.sent) == 45


async def test_a_customer_backs_off_whichever_identifier_met_131056() -> None:
    w = World()
    await handle_send(w.deps, text(to=BSUID, to_phone=TO))
    w.graph.then(meta_error(131056))
    with pytest.raises(RetryLater):
        await handle_send(w.deps, text(to=BSUID))
    with pytest.raises(RetryLater, match="backing off"):
        await handle_send(w.deps, text(to=TO))  # the same person by phone: held, no call
    assert len(w.graph.sent) == 2


async def test_identity_changes_and_statuses_link_identifiers() -> None:
    w = World()
    new_phone = "+5491144445555"
    await on_identity(
        w.deps,
        IdentityChanged(
            phone_number_id=NUMBER,
            change="user_changed_number",
            previous=Identity(phone=TO, user_id=BSUID),
            current=Identity(phone=new_phone, user_id="AR.99"),
            timestamp=datetime.now(UTC),
        ),
        DELIVERY,
    )
    keys = {w.deps.customers.key(i) for i in (TO, BSUID, new_phone, "AR.99")}
    assert keys == {new_phone}
    status = MessageStatus(
        phone_number_id=NUMBER,
        wamid="wamid.x",
        status="sent",
        timestamp=datetime.now(UTC),
        recipient=Identity(phone="+5491100000009", wa_id="5491100000009", user_id="AR.77"),
        occurred_at=datetime.now(UTC) - timedelta(minutes=5),  # not ours, not waited for
    )
    await on_status(w.deps, status, DELIVERY)
    assert w.deps.customers.key("AR.77") == "+5491100000009"


async def test_marketing_preference_is_kept_per_customer_and_the_latest_wins() -> None:
    w = World()
    marketing = TemplateCategoryUpdate(
        template_name="promo_verano", language="es_AR", new_category="MARKETING"
    )
    await on_template_category(w.deps, marketing, DELIVERY)
    await handle_send(w.deps, text(to=BSUID, to_phone=TO))  # one customer

    def preference(value: str, at: datetime) -> PreferenceChanged:
        return PreferenceChanged(
            phone_number_id=NUMBER,
            customer=Identity(user_id=BSUID),
            category="marketing_messages",
            value=value,
            timestamp=at,
        )

    now = datetime.now(UTC)
    await on_preference(w.deps, preference("stop", now), DELIVERY)
    await on_preference(w.deps, preference("resume", now - timedelta(hours=1)), DELIVERY)  # older
    await handle_send(w.deps, promo())  # by phone: the same customer stopped
    [failed] = w.of(MessageFailed)
    assert failed.reason_code == "marketing_opted_out" and len(w.graph.sent) == 1
    await on_preference(w.deps, preference("signup", now + timedelta(seconds=1)), DELIVERY)
    await handle_send(w.deps, promo())
    assert len(w.graph.sent) == 2


async def test_a_paused_fallback_template_is_not_sent_outside_the_window() -> None:
    w = World()
    paused = TemplateStatusUpdate(template_name="reengage", language="es_AR", event="PAUSED")
    await on_template_status(w.deps, paused, DELIVERY)
    w.graph.then(meta_error(131047))
    fallback = {"name": "reengage", "language": "es_AR"}
    await handle_send(w.deps, text(fallback_template=fallback))
    [failed] = w.of(MessageFailed)
    assert failed.reason_code == "template_unusable" and "PAUSED" in failed.reason
    assert len(w.graph.sent) == 1  # only the text; the fallback was not tried


async def test_an_announced_category_change_applies_from_its_time() -> None:
    w = World()
    soon = datetime.now(UTC) + timedelta(days=1)
    change = TemplateCategoryUpdate(
        template_name="aviso", language="es_AR", new_category="MARKETING", effective_at=soon
    )
    await on_template_category(w.deps, change, DELIVERY)
    state = w.deps.templates.get("aviso", "es_AR")
    assert state is None or state.category != "MARKETING"


async def test_the_account_gauge_follows_its_standing() -> None:
    w = World()
    restricted = AccountUpdate(event="ACCOUNT_RESTRICTION", details={"restriction_info": [{}]})
    await on_account(w.deps, restricted, DELIVERY)
    assert w.metric("whatsapp_account_restricted") == 1
    partner = AccountUpdate(event="PARTNER_ADDED")  # nothing about the standing
    await on_account(w.deps, partner, DELIVERY)
    assert w.metric("whatsapp_account_restricted") == 1
    await on_account(w.deps, AccountUpdate(event="ACCOUNT_RECONNECTED"), DELIVERY)
    assert w.metric("whatsapp_account_restricted") == 0


async def test_a_second_priced_status_is_not_counted_again() -> None:
    w = World()
    await handle_send(w.deps, text())
    [sent] = w.of(MessageSent)
    pricing = {"pricing_model": "PMP", "category": "utility", "type": "regular"}
    for name in ("sent", "delivered", "read"):
        status = MessageStatus(
            phone_number_id=NUMBER,
            wamid=sent.wamid,
            status=name,
            timestamp=datetime.now(UTC),
            recipient=Identity(wa_id=TO[1:]),
            pricing=pricing,
        )
        await on_status(w.deps, status, DELIVERY)
    labels = {"phone_number_id": NUMBER, "category": "utility", "pricing_type": "regular"}
    assert w.metric("whatsapp_messages_billable_total", **labels) == 1
