"""The gateway's aiohttp application: the webhooks and the ops endpoints on one port."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from gateway.bootstrap import Adapters, Gateway, bootstrap
from gateway.front import WebhookLane
from gateway.handlers import Deps, hot, receive_ses, receive_whatsapp, verify_subscription
from gateway.http import METRICS_KEY, guarded, read_body, refused, response
from gateway.publisher import UNROUTED_SERVICE
from gateway.settings import Settings
from shared.ops import add_ops_routes, export_queue_depths
from shared.runner import run_service
from shared.service import SITE_KEY

__all__ = ["METRICS_KEY", "create_app", "guarded"]

log = logging.getLogger("mensajero.gateway")

DEPS_KEY = web.AppKey("gateway_deps", Deps)
# An SNS message is at most 256 KB; its envelope adds a little.
SNS_MAX_BYTES = 512 * 1024


def create_app(settings: Settings, adapters: Adapters | None = None) -> web.Application:
    gateway = bootstrap(settings, adapters)
    service = gateway.service
    # No middleware: every route is registered guarded (see gateway.http.guarded).
    app = web.Application(client_max_size=max(settings.WEBHOOK_MAX_BYTES, SNS_MAX_BYTES))
    add_ops_routes(app, service.registry, service.checks, wrap=guarded)
    app.cleanup_ctx.append(run_service(service))
    add_webhook_routes(app, gateway)
    # Meta's plain webhooks are served in front of aiohttp (gateway.front), the rest by it.
    deps = gateway.deps
    lane = WebhookLane(
        deps,
        settings.SHUTDOWN_GRACE_SECONDS,
        # The name looked up at each call, as the route does.
        lambda body, signature: receive_whatsapp(deps, body, signature),
    )
    app.on_shutdown.append(lane.drain)
    app[SITE_KEY] = lane.site
    return app


def add_webhook_routes(app: web.Application, gateway: Gateway) -> None:
    deps = gateway.deps
    app[DEPS_KEY] = deps
    app[METRICS_KEY] = deps.metrics
    bus = gateway.service.bus
    parked = [bus.names.queue(UNROUTED_SERVICE)]
    export_queue_depths(app, deps.metrics.unrouted_waiting, bus, lambda: parked)
    app.router.add_get("/webhook/whatsapp", guarded(whatsapp_verify))
    app.router.add_post("/webhook/whatsapp", guarded(whatsapp_webhook))
    app.router.add_post("/webhook/ses", guarded(ses_webhook))


async def whatsapp_verify(request: web.Request) -> web.Response:
    started = time.monotonic()
    deps = request.app[DEPS_KEY]
    query = request.query
    answer = verify_subscription(
        deps.config.verify_token,
        query.get("hub.mode"),
        query.get("hub.verify_token"),
        query.get("hub.challenge"),
    )
    deps.metrics.request("whatsapp_verify", answer.outcome, time.monotonic() - started)
    return response(answer)


async def whatsapp_webhook(request: web.Request) -> web.Response:
    started = time.monotonic()
    hot.info("=== WEBHOOK WHATSAPP RECIBIDO ===")
    deps = request.app[DEPS_KEY]
    body = await read_body(request, deps.config.webhook_max_bytes)
    if isinstance(body, bytes):
        answer = await receive_whatsapp(deps, body, request.headers.get("X-Hub-Signature-256"))
        deps.metrics.request("whatsapp", answer.outcome, time.monotonic() - started)
        return response(answer)
    deps.metrics.request("whatsapp", body.outcome, time.monotonic() - started)
    return refused(body, "webhook")


async def ses_webhook(request: web.Request) -> web.Response:
    started = time.monotonic()
    deps = request.app[DEPS_KEY]
    body = await read_body(request, SNS_MAX_BYTES)
    if isinstance(body, bytes):
        answer = await receive_ses(deps, body)
        deps.metrics.request("ses", answer.outcome, time.monotonic() - started)
        return response(answer)
    deps.metrics.request("ses", body.outcome, time.monotonic() - started)
    return refused(body, "SNS")
