"""The sender service: consumes send commands and status webhooks, talks to the Graph API."""

from __future__ import annotations

from aiohttp import web

from sender.bootstrap import Adapters, bootstrap
from sender.handlers import send_queue_spec, status_queue_spec
from sender.settings import Settings
from shared.ops import add_ops_routes
from shared.runner import run_service

# The queues' topology, for the tools and tests that declare or delete it.
__all__ = ["create_app", "send_queue_spec", "status_queue_spec"]


def create_app(settings: Settings, adapters: Adapters | None = None) -> web.Application:
    service = bootstrap(settings, adapters)
    app = web.Application()
    add_ops_routes(app, service.registry, service.checks)
    app.cleanup_ctx.append(run_service(service))
    return app
