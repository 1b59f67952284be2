"""SES notifications through SNS: signatures v1 and v2 checked against a certificate these tests
generate and serve on 127.0.0.1; subscriptions confirmed only when they verify."""

from __future__ import annotations

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.app import create_app
from gateway.settings import DEFAULT_SNS_CERT_HOST_PATTERN, Settings
from gateway.sns import SnsMessage, url_allowed
from shared.bus import Bus
from shared.events import EmailBounced, EmailComplained, EmailDelivered
from shared.settings import load_settings
from tests.gateway.conftest import (
    Collector,
    delete_unrouted,
    gateway_settings,
    marker,
    post_sns,
    sns_settings,
)
from tests.services import running
from tests.snsfake import TOPIC, FakeSns, make_certificate

pytestmark = pytest.mark.integration


BOUNCE = {
    "eventType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "nadie@example.com"}],
        "feedbackId": "feedback-1",
    },
    "mail": {"messageId": "ses-msg-1"},
}
COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {
        "complainedRecipients": [{"emailAddress": "enojado@example.com"}],
        "complaintFeedbackType": "abuse",
        "feedbackId": "feedback-2",
    },
    "mail": {"messageId": "ses-msg-2"},
}
DELIVERY = {
    "eventType": "Delivery",
    "delivery": {"recipients": ["ok@example.com"]},
    "mail": {"messageId": "ses-msg-3"},
}


@pytest.mark.parametrize("version", ["1", "2"])
async def test_notifications_become_events(
    ses_gateway: str,
    http: aiohttp.ClientSession,
    collector: Collector,
    fake_sns: FakeSns,
    version: str,
) -> None:
    for payload in (BOUNCE, COMPLAINT, DELIVERY):
        data = fake_sns.message(message=payload, version=version, subject="Amazon SES Email Event")
        assert await post_sns(http, ses_gateway, data) == (200, "ok")
    bounce, complaint, delivery = await collector.wait(3)
    assert isinstance(bounce, EmailBounced)
    assert (bounce.addresses, bounce.bounce_type, bounce.bounce_subtype) == (
        ["nadie@example.com"],
        "Permanent",
        "General",
    )
    assert (bounce.ses_message_id, bounce.feedback_id) == ("ses-msg-1", "feedback-1")
    assert isinstance(complaint, EmailComplained)
    assert (complaint.addresses, complaint.feedback_type) == (["enojado@example.com"], "abuse")
    assert isinstance(delivery, EmailDelivered) and delivery.addresses == ["ok@example.com"]
    assert fake_sns.cert_fetches == ["/certs/SimpleNotificationService-test.pem"]  # cached


async def test_redelivered_notification_has_the_same_event_id(
    ses_gateway: str, http: aiohttp.ClientSession, collector: Collector, fake_sns: FakeSns
) -> None:
    data = fake_sns.message(message=BOUNCE)
    assert (await post_sns(http, ses_gateway, data))[0] == 200
    assert (await post_sns(http, ses_gateway, data))[0] == 200
    first, second = await collector.wait(2)
    assert first.event_id == second.event_id


@pytest.mark.parametrize("version", ["1", "2"])
async def test_subscription_confirmed_only_when_it_verifies(
    ses_gateway: str, http: aiohttp.ClientSession, fake_sns: FakeSns, version: str
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = fake_sns.message(
        "SubscriptionConfirmation", "You have chosen...", key=other_key, version=version
    )
    status, text = await post_sns(http, ses_gateway, forged)
    assert (status, text) == (403, "signature does not verify")
    assert fake_sns.confirmations == []

    genuine = fake_sns.message("SubscriptionConfirmation", "You have chosen...", version=version)
    assert await post_sns(http, ses_gateway, genuine) == (200, "subscription confirmed")
    assert fake_sns.confirmations == [genuine["Token"]]


async def test_unverifiable_messages_are_4xx_and_never_published(
    ses_gateway: str, http: aiohttp.ClientSession, collector: Collector, fake_sns: FakeSns
) -> None:
    tampered = fake_sns.message(message=BOUNCE)
    tampered["Message"] = tampered["Message"].replace("nadie", "alguien")
    wrong_field = fake_sns.message(message=BOUNCE)
    wrong_field["TopicArn"] = TOPIC + "-other"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake_sns.certificates["expired.pem"] = make_certificate(fake_sns.key, expired=True)
    v1_as_v2 = fake_sns.message(message=BOUNCE, version="1")
    v1_as_v2["SignatureVersion"] = "2"
    cases: list[tuple[dict[str, str] | bytes, int]] = [
        (tampered, 403),
        (wrong_field, 403),
        (v1_as_v2, 403),
        (fake_sns.message(message=BOUNCE, key=other_key), 403),
        (fake_sns.message(message=BOUNCE, cert_url="http://127.0.0.2:1/cert.pem"), 400),
        (
            fake_sns.message(
                message=BOUNCE, cert_url="https://sns.us-east-1.amazonaws.com.evil.example/c.pem"
            ),
            400,
        ),
        (fake_sns.message(message=BOUNCE, cert_url=fake_sns.cert_url("missing.pem")), 400),
        (fake_sns.message(message=BOUNCE, cert_url=fake_sns.cert_url("expired.pem")), 400),
        (fake_sns.message(message=BOUNCE, version="3"), 400),
        ({**fake_sns.message(message=BOUNCE), "Signature": "not base64!"}, 400),
        ({k: v for k, v in fake_sns.message(message=BOUNCE).items() if k != "Signature"}, 400),
        ({**fake_sns.message(message=BOUNCE), "Type": "Surprise"}, 400),
        (b"not json", 400),
        (b"[]", 400),
        (b"\xff\xfe", 400),
        (fake_sns.message(message="not json inside"), 400),
    ]
    for data, expected in cases:
        status, text = await post_sns(http, ses_gateway, data)
        assert status == expected, (data, text)
        assert text
    await marker(http, ses_gateway, fake_sns, collector, before=0)


async def test_other_ses_events_and_unsubscribe_are_200_and_nothing(
    ses_gateway: str, http: aiohttp.ClientSession, collector: Collector, fake_sns: FakeSns
) -> None:
    opened = fake_sns.message(message={"eventType": "Open", "mail": {"messageId": "m"}})
    assert await post_sns(http, ses_gateway, opened) == (200, "ok")
    gone = fake_sns.message("UnsubscribeConfirmation", "bye")
    assert await post_sns(http, ses_gateway, gone) == (200, "ok")
    assert fake_sns.confirmations == []
    await marker(http, ses_gateway, fake_sns, collector, before=0)


async def test_topic_allow_list(
    rabbitmq_url: str,
    bus_prefix: str,
    bus: Bus,
    fake_sns: FakeSns,
    http: aiohttp.ClientSession,
    collector: Collector,
) -> None:
    settings = sns_settings(rabbitmq_url, bus_prefix, fake_sns, SNS_ALLOWED_TOPIC_ARNS=[TOPIC])
    try:
        async with running(create_app(settings)) as url:
            other = fake_sns.message(message=BOUNCE, topic=TOPIC + "-other")
            assert await post_sns(http, url, other) == (400, "topic is not allowed")
            assert (await post_sns(http, url, fake_sns.message(message=BOUNCE)))[0] == 200
            [event] = await collector.wait(1)
            assert isinstance(event, EmailBounced)
    finally:
        await delete_unrouted(bus)


async def test_certificate_host_unreachable_is_503(
    rabbitmq_url: str, bus_prefix: str, bus: Bus, fake_sns: FakeSns, http: aiohttp.ClientSession
) -> None:
    # A trusted prefix whose host refuses connections: SNS should retry later.
    settings = gateway_settings(
        rabbitmq_url,
        bus_prefix,
        SNS_TRUSTED_CERT_URL_PREFIXES=["http://127.0.0.1:9/"],
        SNS_HTTP_TIMEOUT_SECONDS=2.0,
    )
    try:
        async with running(create_app(settings)) as url:
            data = fake_sns.message(message=BOUNCE, cert_url="http://127.0.0.1:9/c.pem")
            status, _ = await post_sns(http, url, data)
            assert status == 503
    finally:
        await delete_unrouted(bus)


async def test_subscription_refused_by_sns_is_400(
    ses_gateway: str, http: aiohttp.ClientSession, fake_sns: FakeSns
) -> None:
    data = fake_sns.message("SubscriptionConfirmation", "x", subscribe_path="/expired")
    status, text = await post_sns(http, ses_gateway, data)
    assert status == 400 and "answered HTTP 404" in text
    assert fake_sns.confirmations == []


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.eu-west-3.amazonaws.com/x.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/x.pem", True),
        ("http://sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", False),
        ("https://evil.example/sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://user@sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/x.pem", False),
        ("https://s3.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com:bad/x.pem", False),
        ("not a url", False),
    ],
)
def test_certificate_url_rule(url: str, allowed: bool) -> None:
    assert url_allowed(url, DEFAULT_SNS_CERT_HOST_PATTERN, ()) is allowed


def test_string_to_sign_skips_absent_subject() -> None:
    message = SnsMessage(
        type="Notification",
        message_id="id",
        topic_arn="t",
        signature=b"",
        signature_version="1",
        signing_cert_url="u",
        fields={
            "Message": "m",
            "MessageId": "id",
            "Timestamp": "ts",
            "TopicArn": "t",
            "Type": "Notification",
        },
    )
    assert message.string_to_sign() == (
        b"Message\nm\nMessageId\nid\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    )


def test_list_settings_from_environment_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_WA_APP_SECRET", "s")
    monkeypatch.setenv("META_WA_VERIFY_TOKEN", "v")
    monkeypatch.setenv("SNS_ALLOWED_TOPIC_ARNS", f"{TOPIC}, {TOPIC}-2")
    monkeypatch.setenv("SNS_TRUSTED_CERT_URL_PREFIXES", '["http://127.0.0.1:1/"]')
    settings = load_settings(Settings)
    assert [TOPIC, f"{TOPIC}-2"] == settings.SNS_ALLOWED_TOPIC_ARNS
    assert settings.SNS_TRUSTED_CERT_URL_PREFIXES == ["http://127.0.0.1:1/"]
    assert settings.GATEWAY_PORT == 8080
    assert settings.WEBHOOK_MAX_BYTES == 3 * 1024 * 1024
    assert settings.PUBLISH_TIMEOUT_SECONDS == 3.0


async def test_a_certificate_that_fails_to_load_is_not_fetched_again_for_a_while(
    ses_gateway: str, http: aiohttp.ClientSession, fake_sns: FakeSns
) -> None:
    """Unsigned requests naming a broken certificate must not each cost a fetch."""
    missing = fake_sns.message(message=BOUNCE, cert_url=fake_sns.cert_url("missing.pem"))
    for _ in range(5):
        status, text = await post_sns(http, ses_gateway, missing)
        assert (status, text) == (400, f"{fake_sns.cert_url('missing.pem')} answered HTTP 404")
    assert fake_sns.cert_fetches == ["/certs/missing.pem"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_certificate_failures_are_kept_briefly_and_fetches_are_shared() -> None:
    import asyncio

    from gateway.sns import CERT_FAILURE_SECONDS, CertificateStore, SnsUnavailable

    fetched: list[str] = []
    release = asyncio.Event()

    async def fetch(url: str) -> bytes:
        fetched.append(url)
        await release.wait()
        raise SnsUnavailable(f"cannot fetch {url}: refused")

    clock = Clock()
    store = CertificateStore(fetch, r"^sns\.example$", clock=clock)
    url = "https://sns.example/a.pem"
    waiting = [asyncio.ensure_future(store.key(url)) for _ in range(20)]
    await asyncio.sleep(0)  # every request is waiting on the one fetch
    release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert fetched == [url]
    assert all(isinstance(r, SnsUnavailable) and "refused" in str(r) for r in results)

    clock.now += CERT_FAILURE_SECONDS - 1
    with pytest.raises(SnsUnavailable, match="refused"):
        await store.key(url)
    assert fetched == [url]
    clock.now += 2  # the failure has expired: the next request tries again
    with pytest.raises(SnsUnavailable):
        await store.key(url)
    assert fetched == [url, url]
    other = "https://sns.example/b.pem"
    with pytest.raises(SnsUnavailable):
        await store.key(other)
    assert fetched == [url, url, other]
