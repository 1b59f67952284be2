"""The gateway's use cases as plain functions: request data in, an :class:`Answer` out.

They know nothing of aiohttp; ``gateway.app`` reads the request and writes the answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from gateway.bounds import without_nul
from gateway.metrics import Metrics
from gateway.parser import parse_webhook
from gateway.publisher import Outgoing, Publisher
from gateway.sns import (
    CertificateStore,
    Fetch,
    SnsRejected,
    SnsUnavailable,
    parse_message,
    ses_events,
    verify,
)
from shared.bus import BusError
from shared.events import Event, InboundMessage, MessageContext, MessageStatus
from shared.logs import fields

log = logging.getLogger("mensajero.gateway")

SIGNATURE_PREFIX = "sha256="


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    outcome: str  # the metrics label


@dataclass
class WhatsAppPorts:
    app_secret: bytes
    verify_token: str
    publisher: Publisher
    metrics: Metrics


@dataclass
class SesPorts:
    publisher: Publisher
    metrics: Metrics
    certificates: CertificateStore
    fetch: Fetch
    allowed_topics: Sequence[str]


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
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    given = header[len(SIGNATURE_PREFIX) :].strip().lower().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected, given)


# Fields holding Meta's objects as they came: what can be dropped to make an event serialisable.
_PASSTHROUGH_FIELDS = ("contacts", "order", "system", "referral", "pricing", "conversation")


def _slim(event: Event, reason: str) -> Event:
    """The event without Meta's pass-through objects (kept: ids, type, text, identities)."""
    update: dict[str, object] = {
        name: None for name in _PASSTHROUGH_FIELDS if name in type(event).model_fields
    }
    if "raw" in type(event).model_fields:
        raw = getattr(event, "raw", {})
        kind = raw.get("type")
        update["raw"] = {
            "id": raw.get("id"),
            "type": kind if type(kind) is str else None,  # it may be what nests too deep
            "truncated": f"not serialisable: {reason[:200]}",
        }
    if isinstance(event, InboundMessage) and event.context is not None:
        update["context"] = event.context.model_copy(update={"referred_product": None})
    return event.model_copy(update=update)


# Consumers parse events with pydantic's JSON parser, which refuses nesting past 200 levels; an
# event must never be published that no consumer can read. Meta's objects are a few levels deep.
MAX_PASSTHROUGH_DEPTH = 128


def _deeper_than(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if type(node) is dict:
            stack.extend((child, depth + 1) for child in node.values())
        elif type(node) is list:
            stack.extend((child, depth + 1) for child in node)
    return False


def _too_deep(event: Event) -> bool:
    for name in ("raw", *_PASSTHROUGH_FIELDS):
        if _deeper_than(getattr(event, name, None), MAX_PASSTHROUGH_DEPTH):
            return True
    context = getattr(event, "context", None)
    return isinstance(context, MessageContext) and _deeper_than(
        context.referred_product, MAX_PASSTHROUGH_DEPTH
    )


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"{}[]")
_INNERMOST = re.compile(rb"\{\}|\[\]")


def may_be_deep(body: bytes) -> bool:
    """Whether the body nests past the limit anywhere (then each event is checked).

    Cheap for Meta's bodies: fewer brackets than the limit cannot nest that deep; otherwise the
    strings are cut out, the brackets kept, and innermost pairs peeled off once per level (in C,
    at most the limit's number of passes).
    """
    if body.count(b"{") + body.count(b"[") <= MAX_PASSTHROUGH_DEPTH:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_PASSTHROUGH_DEPTH):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def encode(events: Sequence[Event], skipped: list[str], *, deep: bool = True) -> list[Outgoing]:
    """Serialise each event; one too deep for a consumer goes out without Meta's raw objects."""
    items = []
    for event in events:
        reason = None
        if deep and _too_deep(event):
            reason = f"nested deeper than {MAX_PASSTHROUGH_DEPTH} levels"
        else:
            try:
                items.append(Outgoing(event, event.model_dump_json().encode()))
                continue
            except ValueError as error:
                reason = str(error)
        slim = _slim(event, reason)
        try:
            items.append(Outgoing(slim, slim.model_dump_json().encode()))
        except ValueError as error:
            skipped.append(f"{event.type} {event.event_id} cannot be serialised: {error}")
            continue
        skipped.append(f"{event.type} {event.event_id} published without raw objects: {reason}")
    return items


async def receive_whatsapp(
    ports: WhatsAppPorts, body: bytes, signature: str | None, *, received_at: datetime
) -> Answer:
    """A signed webhook body: 200 once every event is confirmed, 4xx/503 otherwise.

    The caller logs the runbook's ``=== WEBHOOK WHATSAPP RECIBIDO ===`` as the request arrives.
    """
    if signature is None:
        log.warning("webhook without X-Hub-Signature-256 refused", extra=fields(size=len(body)))
        return Answer(401, "missing X-Hub-Signature-256", "unauthorized")
    if not signature_valid(ports.app_secret, body, signature):
        log.warning("webhook with a wrong signature refused", extra=fields(size=len(body)))
        return Answer(401, "invalid X-Hub-Signature-256", "unauthorized")
    log.info("✅ Firma de webhook válida")
    try:
        # NULs become U+FFFD before anything reads the body (gateway.bounds); the signature
        # was checked over the bytes Meta sent.
        payload = orjson.loads(without_nul(body))
    except orjson.JSONDecodeError as error:
        log.warning("signed webhook is not JSON", extra=fields(error=str(error)[:200]))
        return Answer(400, f"body is not JSON: {str(error)[:200]}", "bad_request")

    parsed = parse_webhook(payload, received_at=received_at)
    items = encode(parsed.events, parsed.skipped, deep=may_be_deep(body))
    metrics = ports.metrics
    for reason in parsed.ignored:
        log.info("webhook content ignored", extra=fields(reason=reason))
        metrics.skipped.labels("ignored").inc()
    for reason in parsed.skipped:
        log.warning("webhook update skipped", extra=fields(reason=reason))
        metrics.skipped.labels("malformed").inc()
    try:
        await ports.publisher.publish(items)
    except BusError as error:
        log.error(
            "webhook not accepted: the broker did not confirm its events",
            extra=fields(events=len(items), error=str(error)),
        )
        return Answer(503, "broker unavailable, retry later", "unavailable")
    for item in items:
        _log_event(item.event)
    if not items:
        outcome = "ignored" if parsed.ignored and not parsed.skipped else "empty"
        return Answer(200, "ok", outcome)
    return Answer(200, "ok", "accepted")


def _log_event(event: Event) -> None:
    """One structured line per confirmed event; for a message it is the runbook's line."""
    if not log.isEnabledFor(logging.INFO):
        return
    if type(event) is InboundMessage:
        sender = event.sender
        log.info(
            "Mensaje recibido de %s (%s): %s",
            sender.phone or sender.user_id or sender.wa_id,
            sender.name,
            event.text if event.text is not None else f"<{event.message_type}>",
            extra=fields(
                type=event.type,
                event_id=event.event_id,
                wamid=event.wamid,
                message_type=event.message_type,
                sender=sender.key,
                phone_number_id=event.phone_number_id,
            ),
        )
    elif type(event) is MessageStatus:
        log.info(
            "event published",
            extra=fields(
                type=event.type,
                event_id=event.event_id,
                wamid=event.wamid,
                status=event.status,
                recipient=event.recipient.key,
            ),
        )
    else:
        log.info("event published", extra=fields(type=event.type, event_id=event.event_id))


# --------------------------------------------------------------------------- SES via SNS


async def receive_ses(ports: SesPorts, body: bytes) -> Answer:
    """An SNS message: verified, then confirmed (subscriptions) or published (notifications)."""
    try:
        message = parse_message(body)
        if ports.allowed_topics and message.topic_arn not in ports.allowed_topics:
            raise SnsRejected("topic is not allowed")
        await verify(message, ports.certificates)
    except SnsRejected as error:
        log.warning("SNS message refused", extra=fields(reason=str(error)))
        return Answer(error.status, str(error), "rejected")
    except SnsUnavailable as error:
        log.error("SNS message not verified for now", extra=fields(reason=str(error)))
        return Answer(503, str(error), "unavailable")

    if message.type == "SubscriptionConfirmation":
        url = message.subscribe_url or ""
        if not ports.certificates.allowed(url):
            log.warning("SNS SubscribeURL refused", extra=fields(topic=message.topic_arn))
            return Answer(400, "SubscribeURL is not an SNS URL", "rejected")
        try:
            await ports.fetch(url)
        except SnsRejected as error:
            log.warning("SNS subscription not confirmed", extra=fields(reason=str(error)))
            return Answer(400, f"subscription not confirmed: {error}", "rejected")
        except SnsUnavailable as error:
            log.error("SNS subscription not confirmed", extra=fields(reason=str(error)))
            return Answer(503, f"subscription not confirmed: {error}", "unavailable")
        log.info("SNS subscription confirmed", extra=fields(topic=message.topic_arn))
        return Answer(200, "subscription confirmed", "confirmed")
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
        ports.metrics.skipped.labels("malformed").inc()
    if not events:
        log.info("SES notification ignored", extra=fields(sns_message_id=message.message_id))
        return Answer(200, "ok", "ignored")
    items = encode(events, [])
    try:
        await ports.publisher.publish(items)
    except BusError as error:
        log.error("SES notification not accepted", extra=fields(error=str(error)))
        return Answer(503, "broker unavailable, retry later", "unavailable")
    for item in items:
        _log_event(item.event)
    return Answer(200, "ok", "accepted")
