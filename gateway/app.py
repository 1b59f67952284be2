"""The gateway's aiohttp application: the webhooks and the ops endpoints on one port."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
from aiohttp import web

from gateway.handlers import (
    Answer,
    SesPorts,
    WhatsAppPorts,
    receive_ses,
    receive_whatsapp,
    verify_subscription,
)
from gateway.metrics import Metrics
from gateway.publisher import Publisher
from gateway.settings import Settings
from gateway.sns import MAX_CERT_BYTES, CertificateStore, SnsRejected, SnsUnavailable
from shared.logs import fields
from shared.ops import (
    Handler,
    ReadinessCheck,
    add_ops_routes,
    export_queue_depths,
    service_registry,
)
from shared.service import BUS_KEY, bus_context

log = logging.getLogger("mensajero.gateway")

SETTINGS_KEY = web.AppKey("gateway_settings", Settings)
METRICS_KEY = web.AppKey("gateway_metrics", Metrics)
PUBLISHER_KEY = web.AppKey("gateway_publisher", Publisher)
WHATSAPP_KEY = web.AppKey("gateway_whatsapp_ports", WhatsAppPorts)
SES_KEY = web.AppKey("gateway_ses_ports", SesPorts)

# An SNS message is at most 256 KB; its envelope adds a little.
SNS_MAX_BYTES = 512 * 1024
TEXT = "text/plain"


def _response(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, text=answer.text, content_type=TEXT)


def _refused(answer: Answer) -> web.Response:
    """The answer to a body that was not read whole: the connection closes after it (what is
    left of the body must not be read as the next request)."""
    response = _response(answer)
    response.force_close()
    return response


async def _read_body(request: web.Request, limit: int) -> bytes | Answer:
    length = request.content_length
    if length is not None and length > limit:
        return Answer(413, f"body over {limit} bytes", "too_large")
    try:
        # aiohttp stops reading past the app's client_max_size (the larger limit), chunked too.
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return Answer(413, f"body over {limit} bytes", "too_large")
    except web.RequestPayloadError as error:
        # What aiohttp raises for a body it cannot read: a Content-Encoding that does not
        # decode, a broken chunked encoding. The body ends here: otherwise aiohttp reads on
        # after the answer, meets the error again and logs it with a traceback.
        request.content.feed_eof()
        reason = getattr(error.__cause__, "message", None) or str(error)
        return Answer(400, f"body cannot be read: {' '.join(reason.split())[:200]}", "bad_request")
    except (ConnectionError, asyncio.IncompleteReadError):
        return Answer(400, "body truncated", "bad_request")
    if len(body) > limit:
        return Answer(413, f"body over {limit} bytes", "too_large")
    return body


async def whatsapp_verify(request: web.Request) -> web.Response:
    started = time.monotonic()
    query = request.query
    answer = verify_subscription(
        request.app[SETTINGS_KEY].META_WA_VERIFY_TOKEN,
        query.get("hub.mode"),
        query.get("hub.verify_token"),
        query.get("hub.challenge"),
    )
    request.app[METRICS_KEY].request("whatsapp_verify", answer.outcome, time.monotonic() - started)
    return _response(answer)


async def whatsapp_webhook(request: web.Request) -> web.Response:
    started = time.monotonic()
    log.info("=== WEBHOOK WHATSAPP RECIBIDO ===")
    app = request.app
    body = await _read_body(request, app[SETTINGS_KEY].WEBHOOK_MAX_BYTES)
    if isinstance(body, Answer):
        log.warning("webhook body refused", extra=fields(status=body.status, reason=body.text))
        app[METRICS_KEY].request("whatsapp", body.outcome, time.monotonic() - started)
        return _refused(body)
    answer = await receive_whatsapp(
        app[WHATSAPP_KEY],
        body,
        request.headers.get("X-Hub-Signature-256"),
        received_at=datetime.now(UTC),
    )
    app[METRICS_KEY].request("whatsapp", answer.outcome, time.monotonic() - started)
    return _response(answer)


async def ses_webhook(request: web.Request) -> web.Response:
    started = time.monotonic()
    app = request.app
    body = await _read_body(request, SNS_MAX_BYTES)
    if isinstance(body, Answer):
        log.warning("SNS body refused", extra=fields(status=body.status, reason=body.text))
        app[METRICS_KEY].request("ses", body.outcome, time.monotonic() - started)
        return _refused(body)
    answer = await receive_ses(app[SES_KEY], body)
    app[METRICS_KEY].request("ses", answer.outcome, time.monotonic() - started)
    return _response(answer)


def _unforeseen(request: web.Request) -> web.Response:
    log.exception("unexpected failure handling %s %s", request.method, request.path)
    metrics = request.app.get(METRICS_KEY)
    if metrics is not None:  # counted for the 5xx alert (a guard may serve a bare app)
        metrics.unforeseen(request.method, request.path)
    return web.Response(status=503, text="temporary failure, retry later", content_type=TEXT)


def guarded(handler: Handler) -> Handler:
    """``handler``, answering 503, never 500, for a bug or a failure nobody foresaw: Meta (and
    SNS) retry a 503, and the webhook is not lost while the cause is fixed.

    Built into each route rather than a middleware: any middleware makes aiohttp wrap every
    request in two more coroutines and look the chain up, measurable at 4,000 webhooks a second.
    """

    @functools.wraps(handler)
    async def guard(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            return _unforeseen(request)

    return guard


def _http_fetch(session: aiohttp.ClientSession) -> Callable[[str], Awaitable[bytes]]:
    async def fetch(url: str) -> bytes:
        try:
            async with session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise SnsRejected(f"{url} answered HTTP {response.status}")
                return await response.content.read(MAX_CERT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SnsUnavailable(f"cannot fetch {url}: {error or type(error).__name__}") from error

    return fetch


def _gateway_context(
    settings: Settings, metrics: Metrics
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        publisher = Publisher(app[BUS_KEY], metrics, timeout=settings.PUBLISH_TIMEOUT_SECONDS)
        await publisher.declare()
        export_queue_depths(
            app, metrics.unrouted_waiting, app[BUS_KEY], lambda: [publisher.unrouted_queue]
        )
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.SNS_HTTP_TIMEOUT_SECONDS)
        )
        fetch = _http_fetch(session)
        app[PUBLISHER_KEY] = publisher
        app[WHATSAPP_KEY] = WhatsAppPorts(
            app_secret=settings.META_WA_APP_SECRET.encode(),
            verify_token=settings.META_WA_VERIFY_TOKEN,
            publisher=publisher,
            metrics=metrics,
        )
        app[SES_KEY] = SesPorts(
            publisher=publisher,
            metrics=metrics,
            certificates=CertificateStore(
                fetch, settings.SNS_CERT_HOST_PATTERN, settings.SNS_TRUSTED_CERT_URL_PREFIXES
            ),
            fetch=fetch,
            allowed_topics=settings.SNS_ALLOWED_TOPIC_ARNS,
        )
        yield
        await session.close()

    return context


def create_app(settings: Settings) -> web.Application:
    # No middleware: every route is registered guarded (see guarded()).
    app = web.Application(client_max_size=max(settings.WEBHOOK_MAX_BYTES, SNS_MAX_BYTES))
    registry = service_registry("gateway")
    metrics = Metrics(registry)
    checks: dict[str, ReadinessCheck] = {}
    add_ops_routes(app, registry, checks, wrap=guarded)
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app.cleanup_ctx.append(bus_context(settings, settings.STARTUP_TIMEOUT_SECONDS))
    app.cleanup_ctx.append(_gateway_context(settings, metrics))
    app.router.add_get("/webhook/whatsapp", guarded(whatsapp_verify))
    app.router.add_post("/webhook/whatsapp", guarded(whatsapp_webhook))
    app.router.add_post("/webhook/ses", guarded(ses_webhook))
    return app
