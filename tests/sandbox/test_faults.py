"""Injected faults: Meta errors, latency, 500s, hangs, expired tokens; seeded and scoped."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.helpers import wait_for
from tests.sandbox.support import (
    AGENT,
    CUSTOMER,
    PHONE_ID,
    TOKEN,
    Api,
    StartSandbox,
    assert_meta_error,
    text_message,
)


async def test_error_code_for_one_recipient_the_next_n_sends(api: Api) -> None:
    await api.faults(recipient=CUSTOMER, error_code=131000, count=2)
    for _ in range(2):
        status, body = await api.send(text_message())
        assert_meta_error(status, body, code=131000, http_status=500)
        assert body["error"]["message"] == "(#131000) Something went wrong"
    assert (await api.send(text_message(to=AGENT)))[0] == 200
    assert (await api.send(text_message()))[0] == 200


@pytest.mark.parametrize(
    ("code", "http_status"),
    [(131047, 400), (131026, 400), (131016, 503), (133004, 503), (368, 403), (80007, 400)],
)
async def test_injected_error_answers_with_its_http_status(
    api: Api, code: int, http_status: int
) -> None:
    await api.faults(error_code=code, count=1)
    assert_meta_error(*await api.send(text_message()), code=code, http_status=http_status)


async def test_number_wide_error_until_cleared(api: Api) -> None:
    await api.faults(error_code=131016, error_details="Service unavailable, try later")
    for to in (CUSTOMER, AGENT, CUSTOMER):
        details = assert_meta_error(*await api.send(text_message(to=to)), 131016, 503)
        assert details == "Service unavailable, try later"
    status, _ = await api.request("DELETE", "/_sandbox/faults", token=None)
    assert status == 200
    assert (await api.send(text_message()))[0] == 200


async def test_latency(api: Api) -> None:
    await api.faults(latency_ms=200)
    started = time.monotonic()
    assert (await api.send(text_message()))[0] == 200
    assert time.monotonic() - started >= 0.2


async def _outcomes(api: Api, count: int) -> list[int]:
    return [(await api.send(text_message()))[0] for _ in range(count)]


async def test_http_500_rate_is_seeded(start_sandbox: StartSandbox) -> None:
    first = await start_sandbox(seed=11)
    second = await start_sandbox(seed=11)
    for api in (first, second):
        await api.faults(http_500_rate=0.5)
    outcomes = await _outcomes(first, 30)
    assert set(outcomes) == {200, 500}
    assert await _outcomes(second, 30) == outcomes


async def test_timeout_hangs_and_is_not_accepted(api: Api) -> None:
    await api.faults(timeout_rate=1.0, timeout_seconds=5)
    with pytest.raises(TimeoutError):
        async with api.session.post(
            f"{api.base}/v23.0/{PHONE_ID}/messages",
            json=text_message(),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=aiohttp.ClientTimeout(total=0.3),
        ):
            pass
    assert (await api.get("/_sandbox/messages"))["messages"] == []


async def test_timeout_that_accepts_sends_anyway(api: Api) -> None:
    await api.faults(timeout_rate=1.0, timeout_seconds=0.3, timeout_accepts=True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(api.send(text_message()), timeout=0.1)

    async def accepted() -> bool:
        return len((await api.get("/_sandbox/messages"))["messages"]) == 1

    await wait_for(accepted, timeout=5, message="the hung send to be accepted")


async def test_expired_token_until_renewed(api: Api) -> None:
    await api.faults(expire_token=True)
    status, body = await api.send(text_message())
    assert_meta_error(status, body, code=190, http_status=401)
    assert body["error"]["error_subcode"] == 463
    assert "Session has expired" in body["error"]["message"]
    await api.faults(renew_token=True)
    assert (await api.send(text_message()))[0] == 200


async def test_new_token_replaces_the_old_one(api: Api) -> None:
    await api.faults(expire_token=True)
    await api.faults(renew_token=True, new_token="rotated")
    assert_meta_error(*await api.send(text_message()), code=190, http_status=401)
    assert (await api.send(text_message(), token="rotated"))[0] == 200
    await api.request("POST", "/_sandbox/reset", token=None)
    assert (await api.send(text_message()))[0] == 200


async def test_expired_token_blocks_media_too(api: Api) -> None:
    await api.faults(expire_token=True)
    status, body = await api.request("GET", "/v23.0/123")
    assert_meta_error(status, body, code=190, http_status=401)


async def test_fault_snapshot_and_bad_requests(api: Api) -> None:
    snapshot = await api.faults(recipient="5491135722871", latency_ms=5)
    assert snapshot["recipients"][CUSTOMER]["latency_ms"] == 5
    assert (await api.get("/_sandbox/faults")) == snapshot
    for bad in ({"no_such_fault": 1}, {"http_500_rate": 2}, {"recipient": "nope"}):
        status, body = await api.request("POST", "/_sandbox/faults", token=None, json=bad)
        assert status == 400, bad
        assert body["error"]


async def test_reset_refills_the_limits(start_sandbox: StartSandbox) -> None:
    api = await start_sandbox(pair_burst=1, pair_interval_seconds=60)
    assert (await api.send(text_message()))[0] == 200
    assert_meta_error(*await api.send(text_message()), code=131056)
    await api.request("POST", "/_sandbox/reset", token=None)
    assert (await api.send(text_message()))[0] == 200
