"""Fuzzing the full HTTP path of ``POST /webhook/whatsapp`` and ``POST /webhook/ses``: the real
app, real RabbitMQ, hypothesis's hostile requests (tests/gateway/fuzzing.py).

For every request: the answer is a 2xx or a 4xx (a 503 only means the broker failed, which it
does not here); what it published is exactly what arrived before the next signed marker on the
gateway's one channel, so an unsigned request is checked to have published nothing at all; and
every published event parses with ``shared.events.parse_event`` and holds nothing a consumer
cannot store (no NUL, ids within their bound). tests/system/test_poison.py runs such events
through the real consumers.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bounds import MAX_ID_BYTES
from shared.events import Event, parse_event
from tests.gateway.conftest import Collector, post
from tests.gateway.fuzzing import FUZZ_SETTINGS, Request, ses_requests, whatsapp_requests
from tests.gateway.payloads import SECRET, contact, message, value, webhook
from tests.helpers import wait_for
from tests.snsfake import FakeSns

pytestmark = pytest.mark.integration


class Published:
    """What the gateway published, request by request (read from the conftest's collector)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.seen = 0

    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing example
        return f"Published({len(self.collector.messages)} messages)"

    async def since_last(self, http: aiohttp.ClientSession, url: str) -> list[tuple[str, bytes]]:
        """What was published since the last call: everything before a signed marker."""
        marker = f"wamid.marker.{uuid.uuid4().hex}"
        payload = webhook(value(contacts=[contact()], messages=[message(marker, "text", {})]))
        assert (await post(http, url, payload))[0] == 200
        messages = self.collector.messages

        def arrived() -> int | None:
            for index in range(self.seen, len(messages)):
                if marker.encode() in messages[index].body:
                    return index + 1
            return None

        end = await wait_for(arrived, message="the marker webhook's event")
        new = [(m.type or "", m.body) for m in messages[self.seen : end - 1]]
        self.seen = end
        return new


@pytest.fixture
def published(collector: Collector) -> Published:
    return Published(collector)


async def send(http: aiohttp.ClientSession, url: str, request: Request) -> int:
    async with http.post(url + request.path, data=request.body, headers=request.headers) as answer:
        await answer.read()
        return answer.status


def _strings(node: Any) -> list[str]:
    """Every string in a JSON value, keys too (iteratively: events may nest 128 deep)."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if type(item) is str:
            found.append(item)
        elif type(item) is dict:
            found.extend(item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return found


# What an event passes on as Meta sent it (unbounded by design), and the names of what is an
# id or a code wherever it appears (identities in threads and synced contacts too).
PASSTHROUGH = (
    "raw",
    "value",
    "details",
    "session",
    "contacts",
    "order",
    "system",
    "referral",
    "pricing",
    "conversation",
    "buttons",
)
ID_NAMES = frozenset(
    {
        "wamid",
        "phone_number_id",
        "ses_message_id",
        "correlation_id",
        "waba_id",
        "call_id",
        "template_id",
        "template_name",
        "language",
        "wa_id",
        "user_id",
        "parent_user_id",
        "username",
        "event",
        "field",
        "category",
        "new_category",
        "decision",
    }
)


def _ids(node: Any) -> list[tuple[str, str]]:
    """Every string under an id's name in a dumped event, nested ones too."""
    found: list[tuple[str, str]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            found += [(k, v) for k, v in item.items() if k in ID_NAMES and type(v) is str]
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return found


def assert_consumable(kind: str, body: bytes) -> Event:
    """What every consumer needs of an event: it parses, and PostgreSQL can store its text."""
    try:
        event = parse_event(kind, body)
    except ValueError as error:
        raise AssertionError(f"{kind} does not parse: {error}\n{body[:3000]!r}") from None
    nul = [text for text in _strings(orjson.loads(body)) if "\x00" in text]
    assert not nul, f"NUL in {kind}: {nul[:3]!r}"
    for name, found in _ids(event.model_dump(exclude=set(PASSTHROUGH))):
        assert len(found.encode()) <= MAX_ID_BYTES, (name, found[:80])
    for address in getattr(event, "addresses", []):
        # The bound is bounds.email_address's: no control character; an unassigned code point
        # is text PostgreSQL stores like any other.
        assert len(address) <= 254, address[:80]
        assert not [c for c in address if unicodedata.category(c) in ("Cc", "Cs")], address[:80]
    for meta_error in getattr(event, "errors", []):
        assert -(2**31) < meta_error.code < 2**31, meta_error.code
    return event


async def check(
    http: aiohttp.ClientSession, url: str, published: Published, request: Request
) -> None:
    status = await send(http, url, request)
    assert 200 <= status < 300 or 400 <= status < 500, (status, request)
    new = await published.since_last(http, url)
    if not request.signed:
        assert status >= 400, (status, request)
        assert new == [], (request, new[:3])
    for kind, body in new:
        assert_consumable(kind, body)


@FUZZ_SETTINGS
@given(request=whatsapp_requests(SECRET))
async def test_whatsapp_webhook_answers_4xx_or_200_and_publishes_only_what_consumers_read(
    ses_gateway: str, http: aiohttp.ClientSession, published: Published, request: Request
) -> None:
    await check(http, ses_gateway, published, request)


@FUZZ_SETTINGS
@given(data=st.data())
async def test_ses_webhook_answers_4xx_or_200_and_publishes_only_what_consumers_read(
    ses_gateway: str,
    http: aiohttp.ClientSession,
    published: Published,
    fake_sns: FakeSns,
    data: st.DataObject,
) -> None:
    request = data.draw(ses_requests(fake_sns), label="request")
    await check(http, ses_gateway, published, request)
