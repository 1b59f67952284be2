"""Amazon SNS messages carrying SES events: signature verification and event mapping.

SNS signs each message with the key of the certificate at ``SigningCertURL``: version 1 with
SHA1withRSA, version 2 with SHA256withRSA, over ``name\\nvalue\\n`` pairs of a documented field
list. The certificate is fetched only from an https ``sns.<region>.amazonaws.com`` host (or a
configured trusted prefix, for tests and private mirrors) and cached by URL; a certificate that
fails to load is not fetched again for :data:`CERT_FAILURE_SECONDS` (anybody can name one in an
unsigned request: each must not cost a fetch).

The SES event's values are bounded by :mod:`gateway.bounds`: NULs replaced, a message id too
long for an id dropped, what is not an email address left out (each counted as skipped).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.bounds import MAX_ID_BYTES, email_address, id_fits, text_without_nul
from shared.events import EmailBounced, EmailComplained, EmailDelivered, Event, stable_id

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
MESSAGE_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})
MAX_CERT_BYTES = 64 * 1024
CACHE_SIZE = 32
# A certificate that failed to load answers the same for this long, without a fetch.
CERT_FAILURE_SECONDS = 30.0
FAILURE_CACHE_SIZE = 256

# Fetches a URL's body; raises SnsUnavailable when the host cannot be reached.
Fetch = Callable[[str], Awaitable[bytes]]


class SnsRejected(Exception):
    """The message cannot be trusted or understood: answer 4xx (SNS counts it delivered)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class SnsUnavailable(Exception):
    """A dependency (the certificate host) failed for now: answer 5xx so SNS retries."""


@dataclass(frozen=True)
class SnsMessage:
    type: str
    message_id: str
    topic_arn: str
    fields: dict[str, str]
    signature: bytes
    signature_version: str
    signing_cert_url: str

    @property
    def subscribe_url(self) -> str | None:
        return self.fields.get("SubscribeURL")

    def string_to_sign(self) -> bytes:
        names = NOTIFICATION_FIELDS if self.type == "Notification" else CONFIRMATION_FIELDS
        parts = []
        for name in names:
            value = self.fields.get(name)
            if value is None:
                if name == "Subject":
                    continue
                raise SnsRejected(f"{name} is missing")
            parts.append(f"{name}\n{value}\n")
        return "".join(parts).encode()


def parse_message(body: bytes) -> SnsMessage:
    """The SNS envelope (JSON sent as text/plain). Raises :class:`SnsRejected`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SnsRejected("body is not JSON") from None
    if type(data) is not dict:
        raise SnsRejected("body is not a JSON object")
    kind = data.get("Type")
    if type(kind) is not str:
        raise SnsRejected("unknown SNS message type: Type is not a string")
    if kind not in MESSAGE_TYPES:
        raise SnsRejected(f"unknown SNS message type {kind[:60]!r}")
    strings = {key: value for key, value in data.items() if type(value) is str}
    for name in ("MessageId", "TopicArn", "Signature", "SigningCertURL", "Timestamp"):
        if not strings.get(name):
            raise SnsRejected(f"{name} is missing")
    version = strings.get("SignatureVersion", "1")
    if version not in ("1", "2"):
        raise SnsRejected(f"unsupported SignatureVersion {version[:10]!r}")
    try:
        signature = base64.b64decode(strings["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SnsRejected("Signature is not base64") from None
    return SnsMessage(
        type=kind,
        message_id=strings["MessageId"],
        topic_arn=strings["TopicArn"],
        fields=strings,
        signature=signature,
        signature_version=version,
        signing_cert_url=strings["SigningCertURL"],
    )


def url_allowed(url: str, host_pattern: str, trusted_prefixes: Sequence[str]) -> bool:
    """An https URL on an SNS host (no credentials, default port), or a trusted prefix."""
    if any(prefix and url.startswith(prefix) for prefix in trusted_prefixes):
        return True
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username or parts.password or port not in (None, 443):
        return False
    return re.fullmatch(host_pattern, parts.hostname or "") is not None


@dataclass(frozen=True)
class _Failure:
    """Why a certificate did not load, until when that answer stands (kept as text: the
    exception itself would keep its traceback's frames alive)."""

    until: float
    reason: str
    status: int | None  # SnsRejected's; None for SnsUnavailable

    @classmethod
    def of(cls, error: SnsRejected | SnsUnavailable, until: float) -> _Failure:
        return cls(until, str(error), error.status if isinstance(error, SnsRejected) else None)

    def again(self) -> SnsRejected | SnsUnavailable:
        if self.status is None:
            return SnsUnavailable(self.reason)
        return SnsRejected(self.reason, self.status)


def _remember(cache: dict[str, Any], key: str, value: Any, size: int) -> None:
    if len(cache) >= size:
        cache.pop(next(iter(cache)))  # the oldest
    cache[key] = value


class CertificateStore:
    """Signing certificates by URL: fetched once, kept (a few), checked for validity.

    Requests for a URL being fetched wait for that one fetch; a URL whose certificate failed to
    load answers the same failure for :data:`CERT_FAILURE_SECONDS` without fetching it again. A
    resource: a fetch nobody waits for any more is cancelled at stop.
    """

    def __init__(
        self,
        fetch: Fetch,
        host_pattern: str,
        trusted_prefixes: Sequence[str] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.host_pattern = host_pattern
        self.trusted_prefixes = tuple(trusted_prefixes)
        self.clock = clock
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._failures: dict[str, _Failure] = {}
        self._loading: dict[str, asyncio.Future[rsa.RSAPublicKey]] = {}

    def allowed(self, url: str) -> bool:
        return url_allowed(url, self.host_pattern, self.trusted_prefixes)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        """Cancel the fetches still in flight (every request that waited for them is gone by
        the time the service closes its resources)."""
        loading = list(self._loading.values())
        for fetch in loading:
            fetch.cancel()
        await asyncio.gather(*loading, return_exceptions=True)

    async def key(self, url: str) -> rsa.RSAPublicKey:
        cached = self._keys.get(url)
        if cached is not None:
            return cached
        failure = self._failures.get(url)
        if failure is not None:
            if self.clock() < failure.until:
                raise failure.again()
            del self._failures[url]
        if not self.allowed(url) or not urlsplit(url).path.endswith(".pem"):
            raise SnsRejected("SigningCertURL is not an SNS certificate URL")
        loading = self._loading.get(url)
        if loading is None:
            loading = self._loading[url] = asyncio.ensure_future(self._load(url))
            loading.add_done_callback(lambda done: self._loaded(url, done))
        # Shielded: a request that gives up does not cancel the fetch the others wait for.
        return await asyncio.shield(loading)

    def _loaded(self, url: str, done: asyncio.Future[rsa.RSAPublicKey]) -> None:
        self._loading.pop(url, None)
        if not done.cancelled():
            done.exception()  # seen here too, in case every request waiting for it gave up

    async def _load(self, url: str) -> rsa.RSAPublicKey:
        try:
            key = await self._fetch_key(url)
        except (SnsRejected, SnsUnavailable) as error:
            failure = _Failure.of(error, self.clock() + CERT_FAILURE_SECONDS)
            _remember(self._failures, url, failure, FAILURE_CACHE_SIZE)
            raise
        _remember(self._keys, url, key, CACHE_SIZE)
        return key

    async def _fetch_key(self, url: str) -> rsa.RSAPublicKey:
        pem = await self.fetch(url)
        if len(pem) > MAX_CERT_BYTES:
            raise SnsRejected("signing certificate is too large")
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SnsRejected("signing certificate is not a PEM certificate") from None
        now = datetime.now(UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SnsRejected("signing certificate is not valid now")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsRejected("signing certificate has no RSA key")
        return key


async def verify(message: SnsMessage, store: CertificateStore) -> None:
    """Raise :class:`SnsRejected` unless ``message`` is signed by its SNS certificate."""
    key = await store.key(message.signing_cert_url)
    algorithm: hashes.HashAlgorithm = (
        hashes.SHA256() if message.signature_version == "2" else hashes.SHA1()
    )
    try:
        key.verify(message.signature, message.string_to_sign(), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SnsRejected("signature does not verify", status=403) from None


def ses_events(message: SnsMessage, skipped: list[str]) -> list[Event]:
    """The events an SES notification carries (none for types the notifier does not use).

    Values that cannot travel are left out, each reported in ``skipped``.
    """
    try:
        data = orjson.loads(message.fields.get("Message", ""))
    except orjson.JSONDecodeError:
        raise SnsRejected("Message is not an SES event (not JSON)") from None
    if type(data) is not dict:
        raise SnsRejected("Message is not an SES event")
    kind = data.get("eventType") or data.get("notificationType")
    mail = _dict(data.get("mail"))
    ses_message_id = _str(mail.get("messageId"))
    if ses_message_id is not None and not id_fits(ses_message_id):
        skipped.append(f"mail.messageId longer than {MAX_ID_BYTES} bytes: left out")
        ses_message_id = None
    if kind == "Bounce":
        bounce = _dict(data.get("bounce"))
        return [
            EmailBounced(
                event_id=stable_id(EmailBounced.TYPE, message.message_id),
                correlation_id=ses_message_id,
                addresses=_addresses(bounce.get("bouncedRecipients"), skipped),
                bounce_type=_str(bounce.get("bounceType")) or "Undetermined",
                bounce_subtype=_str(bounce.get("bounceSubType")),
                ses_message_id=ses_message_id,
                feedback_id=_str(bounce.get("feedbackId")),
            )
        ]
    if kind == "Complaint":
        complaint = _dict(data.get("complaint"))
        return [
            EmailComplained(
                event_id=stable_id(EmailComplained.TYPE, message.message_id),
                correlation_id=ses_message_id,
                addresses=_addresses(complaint.get("complainedRecipients"), skipped),
                feedback_type=_str(complaint.get("complaintFeedbackType")),
                ses_message_id=ses_message_id,
                feedback_id=_str(complaint.get("feedbackId")),
            )
        ]
    if kind == "Delivery":
        delivery = _dict(data.get("delivery"))
        recipients = _only_addresses(_list(delivery.get("recipients")), skipped)
        return [
            EmailDelivered(
                event_id=stable_id(EmailDelivered.TYPE, message.message_id),
                correlation_id=ses_message_id,
                addresses=recipients,
                ses_message_id=ses_message_id,
            )
        ]
    return []


def _dict(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


def _list(value: Any) -> list[Any]:
    return value if type(value) is list else []


def _str(value: Any) -> str | None:
    return text_without_nul(value) if type(value) is str else None


def _addresses(recipients: Any, skipped: list[str]) -> list[str]:
    """The ``emailAddress`` of each recipient object."""
    found = [_dict(item).get("emailAddress") for item in _list(recipients)]
    return _only_addresses([value for value in found if value is not None], skipped)


def _only_addresses(values: list[Any], skipped: list[str]) -> list[str]:
    addresses = []
    for value in values:
        address = email_address(value)
        if address is None:
            skipped.append(f"recipient {_shown(value)} is not an email address: left out")
        else:
            addresses.append(address)
    return addresses


def _shown(value: Any) -> str:
    if type(value) is not str:
        return f"(a JSON {type(value).__name__})"
    return repr(value[:60]) + ("..." if len(value) > 60 else "")
