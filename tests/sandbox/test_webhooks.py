"""Status webhooks: Meta's shape, the signature, order, batching, retries, duplicates."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

from sandbox.faults import DeliveryFaults
from sandbox.ids import business_scoped_user_id
from sandbox.people import Person
from sandbox.webhooks import SendStatuses, meta_json, plan_statuses, sign
from tests.helpers import wait_for
from tests.sandbox.support import (
    AGENT,
    CUSTOMER,
    PHONE_ID,
    SECRET,
    WABA_ID,
    Api,
    Sink,
    StartSandbox,
    valid_signature,
)


def statuses_of(sink: Sink, wamid: str) -> list[str]:
    return [s["status"] for s in sink.statuses(wamid)]


async def test_sent_delivered_read_arrive_signed_in_metas_shape(api: Api, sink: Sink) -> None:
    status, answer = await api.text(biz_opaque_callback_data="order-42")
    assert status == 200
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: len(sink.statuses(wamid)) == 3, timeout=5, message="3 statuses")

    assert statuses_of(sink, wamid) == ["sent", "delivered", "read"]
    for received in sink.received:
        assert valid_signature(received.body, received.headers.get("X-Hub-Signature-256"))
        assert received.headers["Content-Type"] == "application/json"
        payload = received.json
        assert payload["object"] == "whatsapp_business_account"
        [entry] = payload["entry"]
        assert entry["id"] == WABA_ID
        [change] = entry["changes"]
        assert change["field"] == "messages"
        assert change["value"]["messaging_product"] == "whatsapp"
        assert change["value"]["metadata"] == {
            "display_phone_number": "15550000001",
            "phone_number_id": PHONE_ID,
        }
    sent, delivered, read = sink.statuses(wamid)
    for item in (sent, delivered, read):
        assert item["id"] == wamid
        assert item["recipient_id"] == CUSTOMER.lstrip("+")
        assert item["timestamp"].isdigit()
        assert item["biz_opaque_callback_data"] == "order-42"
        assert item["pricing"] == {
            "billable": False,
            "pricing_model": "PMP",
            "category": "service",
            "type": "free_customer_service",
        }
        assert item["recipient_user_id"] == business_scoped_user_id(CUSTOMER, WABA_ID)
        # A v24.0+ webhook (the sandbox default is v25.0) has no `conversation`.
        assert "conversation" not in item
    # Beside sent, delivered and read: the recipient in `contacts[]` (Meta's BSUID page).
    for received in sink.received:
        [contact] = received.value["contacts"]
        assert contact["wa_id"] == CUSTOMER.lstrip("+")
        assert contact["user_id"] == business_scoped_user_id(CUSTOMER, WABA_ID)


async def test_v23_webhooks_carry_a_conversation(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(webhook_version="v23.0")
    _, answer = await api.text()
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: len(sink.statuses(wamid)) == 3, timeout=5, message="3 statuses")
    sent, delivered, read = sink.statuses(wamid)
    for item in (sent, delivered, read):
        assert item["conversation"]["origin"] == {"type": "service"}
    assert "expiration_timestamp" in sent["conversation"]
    assert "expiration_timestamp" not in read["conversation"]
    assert sent["conversation"]["id"] == read["conversation"]["id"]


async def test_template_is_billed_in_its_category(api: Api, sink: Sink) -> None:
    body = {
        "messaging_product": "whatsapp",
        "to": CUSTOMER,
        "type": "template",
        "template": {
            "name": "reengage_customer",
            "language": {"code": "es_AR"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
        },
    }
    _, answer = await api.send(body)
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: len(sink.statuses(wamid)) == 3, timeout=5)
    pricing = sink.statuses(wamid)[0]["pricing"]
    assert pricing["billable"] is True
    assert pricing["type"] == "regular"
    assert pricing["category"] == "utility"


async def test_no_opaque_data_means_no_field(api: Api, sink: Sink) -> None:
    _, answer = await api.text()
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: len(sink.statuses(wamid)) == 3, timeout=5)
    assert all("biz_opaque_callback_data" not in s for s in sink.statuses(wamid))


async def test_read_at_delivery_sends_only_read(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(status_delays_ms=(5, 30, 30))
    _, answer = await api.text()
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: "read" in statuses_of(sink, wamid), timeout=5)
    assert statuses_of(sink, wamid) == ["sent", "read"]


async def send_five(api: Api) -> set[str]:
    answers = await asyncio.gather(*(api.text(to=f"+5491100000{i:03d}") for i in range(5)))
    return {answer["messages"][0]["id"] for _, answer in answers}


async def test_updates_due_together_share_one_post(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(status_delays_ms=(300, 3000, 4000), webhook_batch_window_ms=250)
    wamids = await send_five(api)
    await wait_for(lambda: len(sink.statuses()) == 5, timeout=5, message="5 sent statuses")
    [post] = sink.received
    assert {s["id"] for s in post.value["statuses"]} == wamids
    assert {s["status"] for s in post.value["statuses"]} == {"sent"}


async def test_batches_are_capped(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(
        status_delays_ms=(300, 3000, 4000), webhook_batch_window_ms=250, webhook_max_batch=2
    )
    await send_five(api)
    await wait_for(lambda: len(sink.statuses()) == 5, timeout=5, message="5 sent statuses")
    assert sorted(len(r.value["statuses"]) for r in sink.received) == [1, 2, 2]


async def test_non_200_is_retried_with_growing_backoff(
    start_sandbox: StartSandbox, sink: Sink
) -> None:
    api = await start_sandbox(status_delays_ms=(5, 5000, 6000))
    sink.answers = [500, 503, 404]
    _, answer = await api.text()
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: len(sink.received) >= 4, timeout=5, message="3 failures and a 200")
    first = sink.received[0].body
    assert [r.body for r in sink.received[:4]] == [first] * 4
    assert all(valid_signature(r.body, r.headers["X-Hub-Signature-256"]) for r in sink.received)

    deliveries = (await api.get("/_sandbox/webhooks"))["webhooks"]
    delivery = next(d for d in deliveries if d["body"]["entry"][0]["changes"][0]["value"]
                    ["statuses"][0]["id"] == wamid)  # fmt: skip
    assert delivery["attempts"] == 4
    assert delivery["delivered"] is True
    assert delivery["status"] == 200
    # Each wait is at least the backoff, which doubles from 0.02 s (the test's initial delay).
    times = delivery["attempted_at"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.9 * backoff for gap, backoff in zip(gaps, (0.02, 0.04, 0.08), strict=True))


async def test_retries_stop_after_max_attempts(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(webhook_max_attempts=3, status_delays_ms=(5, 5000, 6000))
    sink.answers = [500] * 10
    await api.text()
    await wait_for(lambda: len(sink.received) == 3, timeout=5)

    async def given_up() -> bool:
        state = await api.get("/_sandbox/webhooks")
        return bool(state["pending"] == 2)  # only delivered and read remain scheduled

    await wait_for(given_up, timeout=5, message="the dispatcher to give up")
    [delivery] = (await api.get("/_sandbox/webhooks"))["webhooks"]
    assert (delivery["attempts"], delivery["delivered"], delivery["status"]) == (3, False, 500)


async def test_unreachable_webhook_url_is_retried_and_logged(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(
        webhook_url="http://127.0.0.1:9/webhook", webhook_max_attempts=2, status_delays_ms=(5, 5, 5)
    )
    await api.text()

    async def failed() -> list[dict[str, Any]]:
        log = (await api.get("/_sandbox/webhooks"))["webhooks"]
        return [d for d in log if d["attempts"] == 2]

    [delivery] = await wait_for(failed, timeout=5)
    assert delivery["delivered"] is False
    assert delivery["status"] is None
    assert delivery["error"]


async def test_async_failure_posts_failed_with_metas_errors(api: Api, sink: Sink) -> None:
    await api.faults(recipient=CUSTOMER, async_failure_code=131026, count=1)
    status, answer = await api.text()
    assert status == 200
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: sink.statuses(wamid), timeout=5)
    [failed] = sink.statuses(wamid)
    assert failed["status"] == "failed"
    assert failed["recipient_id"] == CUSTOMER.lstrip("+")
    [error] = failed["errors"]
    assert error["code"] == 131026
    assert error["title"] == error["message"] == "Message Undeliverable"
    assert error["error_data"]["details"]
    assert error["href"].startswith("https://developers.facebook.com/")
    # The phone never got it; the next send (count was 1) is delivered normally.
    assert await api.inbox() == []
    _, answer = await api.text()
    await wait_for(lambda: len(sink.statuses(answer["messages"][0]["id"])) == 3, timeout=5)


async def test_dropped_status_webhooks(api: Api, sink: Sink) -> None:
    await api.faults(recipient=CUSTOMER, drop_status_webhooks=True)
    _, dropped = await api.text()
    _, kept = await api.text(to=AGENT)
    kept_id = kept["messages"][0]["id"]
    await wait_for(lambda: "read" in statuses_of(sink, kept_id), timeout=5)
    assert sink.statuses(dropped["messages"][0]["id"]) == []
    assert len(await api.inbox()) == 1  # the phone still got the message


async def test_duplicates_and_reordering(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(status_delays_ms=(10, 40, 70))
    await api.faults(duplicate_webhooks=True, reorder_webhooks=True)
    wamids = []
    for i in range(8):
        _, answer = await api.text(to=f"+5491100000{i:03d}")
        wamids.append(answer["messages"][0]["id"])
    await wait_for(lambda: len(sink.statuses()) == 8 * 6, timeout=5, message="48 statuses")
    orders = [statuses_of(sink, wamid) for wamid in wamids]
    for order in orders:
        assert sorted(order) == sorted(["sent", "delivered", "read"] * 2)
    assert any(order[:3] != ["sent", "delivered", "read"] for order in orders)


def test_plan_reorders_and_duplicates_deterministically() -> None:
    def plan(seed: int) -> list[tuple[float, str]]:
        send = SendStatuses("wamid.X", Person(key="p1", user_id="AR.1"), to_phone=False, pricing={})
        items = plan_statuses(
            send, (0.1, 0.2, 0.3), DeliveryFaults(duplicate=True, reorder=True), random.Random(seed)
        )
        return [(round(delay, 6), item["status"]) for delay, item, _ in items]

    assert plan(1) == plan(1)
    assert len(plan(1)) == 6


def test_signature_is_hmac_sha256_of_the_exact_bytes() -> None:
    body = meta_json({"text": "Hola ñandú https://x.y/z"})
    assert body == b'{"text":"Hola \\u00f1and\\u00fa https:\\/\\/x.y\\/z"}'
    assert sign(body, SECRET) == (
        "sha256=" + __import__("hmac").new(SECRET.encode(), body, "sha256").hexdigest()
    )
    assert valid_signature(body, sign(body, SECRET))
    assert not valid_signature(body + b" ", sign(body, SECRET))
