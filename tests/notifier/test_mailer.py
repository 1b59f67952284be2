"""The SES adapter against moto's server (and the throttling proxy in front of it)."""

from __future__ import annotations

import socket

import pytest

from notifier.mailer import Email, MailError, SesMailer
from tests.notifier.conftest import Addresses, ThrottlingProxy, create_identities, moto_mails

pytestmark = pytest.mark.integration


def mail(addresses: Addresses, sender: str | None = None) -> Email:
    return Email(
        sender=sender or addresses.error_sender,
        to=(addresses.errors,),
        subject="Prueba ñandú",
        text="texto plano",
        html="<p>texto <b>HTML</b></p>",
        reply_to=(addresses.reply_to,),
    )


def mailer(endpoint: str, **kw: object) -> SesMailer:
    values: dict[str, object] = {
        "region": "us-east-1",
        "endpoint_url": endpoint,
        "access_key_id": "testing",
        "secret_access_key": "testing",
    }
    values.update(kw)
    return SesMailer(**values)  # type: ignore[arg-type]


async def test_send_returns_message_and_request_ids(moto_url, addresses: Addresses) -> None:
    await create_identities(moto_url, addresses.error_sender)
    async with mailer(moto_url) as ses:
        result = await ses.send(mail(addresses))
    assert result.status_code == 200
    assert result.request_id
    [stored] = await moto_mails(moto_url, to=addresses.errors)
    assert stored["id"] == result.message_id
    assert stored["subject"] == "Prueba ñandú"
    assert stored["source"] == addresses.error_sender


async def test_request_carries_both_bodies_reply_to_and_configuration_set(
    moto_url, addresses: Addresses, throttling_proxy: ThrottlingProxy
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    async with mailer(throttling_proxy.url, configuration_set="mensajero") as ses:
        await ses.send(mail(addresses))
    [request] = throttling_proxy.requests
    assert request["ReplyToAddresses"] == [addresses.reply_to]  # moto does not keep it
    assert request["ConfigurationSetName"] == "mensajero"
    body = request["Content"]["Simple"]["Body"]
    assert body["Text"]["Data"] == "texto plano"
    assert body["Html"]["Data"] == "<p>texto <b>HTML</b></p>"
    assert body["Text"]["Charset"] == "UTF-8"


async def test_unverified_sender_is_a_permanent_rejection(moto_url, addresses: Addresses) -> None:
    async with mailer(moto_url) as ses:
        with pytest.raises(MailError) as caught:
            await ses.send(mail(addresses, sender=f"unknown-{addresses.unique}@example.com"))
    error = caught.value
    assert error.error_type == "MessageRejected"
    assert not error.retryable and not error.throttled
    assert error.status_code == 400
    assert error.request_id
    assert "not verified" in error.message


async def test_throttling_is_retryable_and_not_retried_by_botocore(
    moto_url, addresses: Addresses, throttling_proxy: ThrottlingProxy
) -> None:
    await create_identities(moto_url, addresses.error_sender)
    throttling_proxy.throttle = 1
    async with mailer(throttling_proxy.url) as ses:
        with pytest.raises(MailError) as caught:
            await ses.send(mail(addresses))
        assert throttling_proxy.sends == 1  # one attempt per call: pacing is ours
        assert caught.value.throttled and caught.value.retryable
        assert caught.value.error_type == "TooManyRequestsException"
        assert caught.value.request_id == "throttled-1"
        await ses.send(mail(addresses))
    assert len(await moto_mails(moto_url, to=addresses.errors)) == 1


async def test_unreachable_endpoint_is_retryable(addresses: Addresses) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with mailer(f"http://127.0.0.1:{port}", timeout=2.0) as ses:
        with pytest.raises(MailError) as caught:
            await ses.send(mail(addresses))
    assert caught.value.retryable


async def test_default_credential_chain_without_keys(
    moto_url, addresses: Addresses, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No keys in the settings: botocore's chain finds them (here the environment; in
    # production an IAM role). No session token is needed.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-chain")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-chain")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    await create_identities(moto_url, addresses.error_sender)
    async with mailer(moto_url, access_key_id=None, secret_access_key=None) as ses:
        result = await ses.send(mail(addresses))
    assert result.message_id
