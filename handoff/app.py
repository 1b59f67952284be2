"""The handoff service: routes every inbound message between the bot, customers and agents."""

from __future__ import annotations

from aiohttp import web

from handoff.bootstrap import Adapters, bootstrap
from handoff.settings import Settings
from shared.ops import add_ops_routes
from shared.runner import run_service


def create_app(settings: Settings, adapters: Adapters | None = None) -> web.Application:
    service = bootstrap(settings, adapters)
    app = web.Application()
    add_ops_routes(app, service.registry, service.checks)
    app.cleanup_ctx.append(run_service(service))
    return app
