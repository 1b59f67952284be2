"""`pricing` on sent, delivered and read statuses: per-message pricing (PMP) since July 2025.

From Meta's status messages webhook reference: `type` regular (billable), free_customer_service
(a non-template message, or a utility template, inside the customer service window) or
free_entry_point (inside a free entry point window, category referral_conversion).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import wait_for
from tests.sandbox.support import (
    CUSTOMER,
    DATA,
    Api,
    Sink,
    StartSandbox,
    template_message,
    text_message,
)

TEMPLATES = str(DATA / "templates.yaml")
MARKETING = template_message("intro_catalog_offer", "en_US", "1", "2", "3")
AD = {
    "source_url": "https://fb.me/ad",
    "source_id": "120200000000000",
    "source_type": "ad",
    "headline": "Turnos online",
    "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
}


async def pricing_of(api: Api, sink: Sink, message: dict[str, Any]) -> dict[str, Any]:
    """The pricing of a send, the same on sent, delivered and read."""
    status, answer = await api.send(message)
    assert status == 200, answer
    wamid = answer["messages"][0]["id"]
    await wait_for(lambda: len(sink.statuses(wamid)) == 3, timeout=5, message="3 statuses")
    prices = [s["pricing"] for s in sink.statuses(wamid)]
    assert prices[0] == prices[1] == prices[2]
    assert prices[0]["pricing_model"] == "PMP"
    assert prices[0]["billable"] == (prices[0]["type"] == "regular")
    found: dict[str, Any] = prices[0]
    return found


@pytest.mark.parametrize(
    ("message", "window", "category", "kind"),
    [
        (text_message(), True, "service", "free_customer_service"),
        (template_message("hello_world", "en_US"), True, "utility", "free_customer_service"),
        (template_message("hello_world", "en_US"), False, "utility", "regular"),
        (MARKETING, True, "marketing", "regular"),
        (template_message("auth_code", "en_US", "123456"), True, "authentication", "regular"),
    ],
)  # fmt: skip
async def test_the_price_of_each_kind(
    start_sandbox: StartSandbox,
    sink: Sink,
    message: dict[str, Any],
    window: bool,
    category: str,
    kind: str,
) -> None:
    api = await start_sandbox(templates=TEMPLATES)
    if window:
        await api.inbound(**{"from": CUSTOMER, "text": "Hola"})
    pricing = await pricing_of(api, sink, message)
    assert (pricing["category"], pricing["type"]) == (category, kind)


async def test_a_free_entry_point_window(start_sandbox: StartSandbox, sink: Sink) -> None:
    api = await start_sandbox(templates=TEMPLATES)
    status, _ = await api.inbound(**{"from": CUSTOMER, "text": "Vi el anuncio", "referral": AD})
    assert status == 200
    assert sink.messages()[0]["referral"] == AD
    for message in (text_message(), MARKETING):
        pricing = await pricing_of(api, sink, message)
        assert pricing == {
            "billable": False,
            "pricing_model": "PMP",
            "category": "referral_conversion",
            "type": "free_entry_point",
        }
    # Even in a v24.0+ webhook, a free entry point status names its window.
    statuses = sink.statuses()
    sent = next(s for s in statuses if s["status"] == "sent")
    assert sent["conversation"]["origin"] == {"type": "referral_conversion"}
    assert int(sent["conversation"]["expiration_timestamp"]) > 0
    assert len({s["conversation"]["id"] for s in statuses}) == 1
