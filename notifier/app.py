"""The notifier: email through Amazon SES to the operators and to the company profiles."""

from __future__ import annotations

from aiohttp import web

from notifier.bootstrap import Adapters, bootstrap
from notifier.settings import Settings
from shared.ops import add_ops_routes
from shared.runner import run_service


def create_app(settings: Settings, adapters: Adapters | None = None) -> web.Application:
    service = bootstrap(settings, adapters)
    app = web.Application()
    add_ops_routes(app, service.registry, service.checks)
    app.cleanup_ctx.append(run_service(service))
    return app
