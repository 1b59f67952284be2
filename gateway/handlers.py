"""The gateway's use cases as plain functions: request data in, an :class:`Answer` out.

They know nothing of aiohttp (``gateway.app`` reads the request and writes the answer); what
they use, :class:`Deps`, is built once by ``gateway.bootstrap``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from gateway.bounds import without_nul
from gateway.config import GatewayConfig
from gateway.encoding import encode, may_be_deep
from gateway.metrics import Metrics
from gateway.parser import field_of, parse_in_steps
from gateway.parser.parsed import Parsed
from gateway.publisher import EventPublisher, Outgoing
from gateway.sns import (
    CertificateStore,
    Fetch,
    SnsMessage,
    SnsRejected,
    SnsUnavailable,
    parse_message,
    ses_events,
    verify,
)
from shared.bus import BusError
from shared.events import Event, InboundMessage, MessageStatus
from shared.logs import HotLog, HotParts, fields

log = logging.getLogger("mensajero.gateway")
# The lines of every webhook (the runbook's and one per event), at thousands a second.
hot = HotLog(log)

SIGNATURE_PREFIX = "sha256="
WEBHOOK_REFUSAL = "webhook not accepted"
# Events of one webhook encoded and published together before the next are encoded.
PUBLISH_CHUNK = 100
# The skip counter's ``field`` label for SES notifications (they come through SNS, not Meta).
SES_FIELD = "ses"
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    outcome: str  # the metrics label


@dataclass(frozen=True)
class Deps:
    """What the webhooks' use cases need (``gateway.bootstrap`` builds it)."""

    config: GatewayConfig
    publisher: EventPublisher
    metrics: Metrics
    certificates: CertificateStore  # SNS signing certificates
    fetch: Fetch  # SNS SubscribeURLs
    clock: Clock  # a webhook's arrival time: stands in for a missing or unreadable one


# --------------------------------------------------------------------------- WhatsApp


def verify_subscription(
    verify_token: str, mode: str | None, token: str | None, challenge: str | None
) -> Answer:
    """Meta's handshake: echo the challenge when mode and token match, else 403."""
    if (
        mode == "subscribe"
        and token is not None
        and hmac.compare_digest(
            token.encode("utf-8", "surrogatepass"), verify_token.encode("utf-8", "surrogatepass")
        )
        and challenge is not None
    ):
        log.info("webhook verified by Meta")
        return Answer(200, challenge, "verified")
    log.warning("webhook verification refused", extra=fields(mode=mode))
    return Answer(403, "verification failed: wrong hub.mode or hub.verify_token", "forbidden")


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256: sha256=<hex>`` is the HMAC-SHA256 of the raw body (constant time)."""
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    # OpenSSL's one-shot HMAC (by the digest's name: a constructor takes the slow path).
    expected = hmac.digest(secret, body, "sha256").hex().encode()
    given = header[len(SIGNATURE_PREFIX) :].strip().lower().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected, given)


async def receive_whatsapp(deps: Deps, body: bytes, signature: str | None) -> Answer:
    """A signed webhook body: 200 once every event is confirmed, 4xx/503 otherwise.

    The caller logs the runbook's ``=== WEBHOOK WHATSAPP RECIBIDO ===`` as the request arrives.
    """
    if signature is None:
        log.warning("webhook without X-Hub-Signature-256 refused", extra=fields(size=len(body)))
        return Answer(401, "missing X-Hub-Signature-256", "unauthorized")
    if not signature_valid(deps.config.app_secret, body, signature):
        log.warning("webhook with a wrong signature refused", extra=fields(size=len(body)))
        return Answer(401, "invalid X-Hub-Signature-256", "unauthorized")
    hot.info("✅ Firma de webhook válida")
    try:
        # NULs become U+FFFD before anything reads the body (gateway.bounds); the signature
        # was checked over the bytes Meta sent.
        payload = orjson.loads(without_nul(body))
    except orjson.JSONDecodeError as error:
        log.warning("signed webhook is not JSON", extra=fields(error=str(error)[:200]))
        return Answer(400, f"body is not JSON: {str(error)[:200]}", "bad_request")

    parsed = Parsed(deps.clock())
    unpublishable: list[tuple[Event, str]] = []
    items, chunks = await _read_publishing(deps, payload, parsed, unpublishable, may_be_deep(body))
    _count_skips(deps.metrics, parsed, unpublishable)
    # A large webhook's answer waits for every chunk under way; a small one's are published now.
    refused = await _publish(
        deps, items, WEBHOOK_REFUSAL, _all_confirmed(chunks) if chunks else None
    )
    if refused is not None:
        return refused
    if not items:
        outcome = "ignored" if parsed.ignored and not parsed.skips else "empty"
        return Answer(200, "ok", outcome)
    return Answer(200, "ok", "accepted")


def _count_skips(metrics: Metrics, parsed: Parsed, unpublishable: list[tuple[Event, str]]) -> None:
    """A log line and a count, by webhook field, for each update that did not become an event."""
    for field, reason in parsed.ignored:
        log.info("webhook content ignored", extra=fields(reason=reason))
        metrics.skip("ignored", field)
    for field, reason in parsed.skips:
        log.warning("webhook update skipped", extra=fields(field=field, reason=reason))
        metrics.skip("malformed", field)
    for event, reason in unpublishable:
        log.warning("webhook update skipped", extra=fields(field=field_of(event), reason=reason))
        metrics.skip("malformed", field_of(event))


async def _publish(
    deps: Deps, items: Sequence[Outgoing], refusal: str, published: Awaitable[object] | None = None
) -> Answer | None:
    """Publish (or wait for ``published``, the publishes under way), confirmed; the 503 to
    answer when the broker did not confirm (None: done)."""
    try:
        await (deps.publisher.publish(items) if published is None else published)
    except BusError as error:
        log.error(
            "%s: the broker did not confirm its events",
            refusal,
            extra=fields(events=len(items), error=str(error)),
        )
        return Answer(503, "broker unavailable, retry later", "unavailable")
    hot.info_lines([_event_line(item.event) for item in items])
    return None


async def _read_publishing(
    deps: Deps, payload: Any, parsed: Parsed, skipped: list[tuple[Event, str]], deep: bool
) -> tuple[list[Outgoing], list[asyncio.Task[None]]]:
    """Parse ``payload`` into ``parsed``, publishing a large webhook's events
    :data:`PUBLISH_CHUNK` at a time as they are read: the broker stores the first while the
    gateway reads the rest (each chunk goes out on the next loop turn). Every event encoded,
    and the chunks' publishes under way (none for a small webhook: its events are left to
    publish)."""
    events = parsed.events
    items: list[Outgoing] = []
    chunks: list[asyncio.Task[None]] = []
    done = 0
    for _ in parse_in_steps(payload, parsed, every=PUBLISH_CHUNK):
        if len(events) - done >= PUBLISH_CHUNK:
            chunk = encode(events[done:], skipped, deep=deep)
            done = len(events)
            items += chunk
            chunks.append(asyncio.ensure_future(deps.publisher.publish(chunk)))
            await asyncio.sleep(0)
    rest = encode(events[done:], skipped, deep=deep)
    items += rest
    if chunks and rest:
        chunks.append(asyncio.ensure_future(deps.publisher.publish(rest)))
    return items, chunks


async def _all_confirmed(chunks: Sequence[asyncio.Task[None]]) -> None:
    """Every chunk's publish done (none left unretrieved); the first failure raised."""
    for result in await asyncio.gather(*chunks, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def _event_line(event: Event) -> HotParts:
    """The structured line of a confirmed event; for a message it is the runbook's line."""
    if type(event) is InboundMessage:
        sender = event.sender
        return (
            "Mensaje recibido de %s (%s): %s",
            (
                sender.phone or sender.user_id or sender.wa_id,
                sender.name,
                event.text if event.text is not None else f"<{event.message_type}>",
            ),
            {
                "type": event.type,
                "event_id": event.event_id,
                "wamid": event.wamid,
                "message_type": event.message_type,
                "sender": sender.key,
                "phone_number_id": event.phone_number_id,
            },
        )
    if type(event) is MessageStatus:
        return (
            "event published",
            (),
            {
                "type": event.type,
                "event_id": event.event_id,
                "wamid": event.wamid,
                "status": event.status,
                "recipient": event.recipient.key,
            },
        )
    return "event published", (), {"type": event.type, "event_id": event.event_id}


# --------------------------------------------------------------------------- SES via SNS


async def receive_ses(deps: Deps, body: bytes) -> Answer:
    """An SNS message: verified, then confirmed (subscriptions) or published (notifications)."""
    try:
        message = parse_message(body)
        allowed = deps.config.allowed_topics
        if allowed and message.topic_arn not in allowed:
            raise SnsRejected("topic is not allowed")
        await verify(message, deps.certificates)
    except SnsRejected as error:
        log.warning("SNS message refused", extra=fields(reason=str(error)))
        return Answer(error.status, str(error), "rejected")
    except SnsUnavailable as error:
        log.error("SNS message not verified for now", extra=fields(reason=str(error)))
        return Answer(503, str(error), "unavailable")
    if message.type == "SubscriptionConfirmation":
        return await _confirm_subscription(deps, message)
    if message.type == "UnsubscribeConfirmation":
        log.warning("SNS subscription ended", extra=fields(topic=message.topic_arn))
        return Answer(200, "ok", "ignored")

    skipped: list[str] = []
    try:
        events = ses_events(message, skipped)
    except SnsRejected as error:
        log.warning("SNS notification refused", extra=fields(reason=str(error)))
        return Answer(400, str(error), "rejected")
    for reason in skipped:
        log.warning("SES notification value skipped", extra=fields(reason=reason))
        deps.metrics.skip("malformed", SES_FIELD)
    if not events:
        log.info("SES notification ignored", extra=fields(sns_message_id=message.message_id))
        return Answer(200, "ok", "ignored")
    refused = await _publish(deps, encode(events, []), "SES notification not accepted")
    return refused or Answer(200, "ok", "accepted")


async def _confirm_subscription(deps: Deps, message: SnsMessage) -> Answer:
    """Visit the SubscribeURL (an SNS one only) to confirm a verified subscription."""
    url = message.subscribe_url or ""
    if not deps.certificates.allowed(url):
        log.warning("SNS SubscribeURL refused", extra=fields(topic=message.topic_arn))
        return Answer(400, "SubscribeURL is not an SNS URL", "rejected")
    try:
        await deps.fetch(url)
    except SnsRejected as error:
        log.warning("SNS subscription not confirmed", extra=fields(reason=str(error)))
        return Answer(400, f"subscription not confirmed: {error}", "rejected")
    except SnsUnavailable as error:
        log.error("SNS subscription not confirmed", extra=fields(reason=str(error)))
        return Answer(503, f"subscription not confirmed: {error}", "unavailable")
    log.info("SNS subscription confirmed", extra=fields(topic=message.topic_arn))
    return Answer(200, "subscription confirmed", "confirmed")
