"""The sandbox application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from sandbox import control, emit, graph, phones, template_api
from sandbox.config import SandboxConfig
from sandbox.keys import CONFIG_KEY, HTTP_KEY, STATE_KEY
from sandbox.state import SandboxState
from sandbox.templates import load_templates

log = logging.getLogger("sandbox")


async def http_client(app: web.Application) -> AsyncIterator[None]:
    """The client session the webhooks are posted with (keep-alive to the gateway)."""
    config = app[CONFIG_KEY]
    connector = aiohttp.TCPConnector(limit=config.webhook_concurrency)
    timeout = aiohttp.ClientTimeout(total=config.webhook_timeout_seconds)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        app[HTTP_KEY] = session
        yield


async def webhook_dispatcher(app: web.Application) -> AsyncIterator[None]:
    """The background task that posts status webhooks when they fall due."""
    dispatcher = app[STATE_KEY].dispatcher
    dispatcher.start(app[HTTP_KEY])
    log.info("posting webhooks to %s", app[CONFIG_KEY].webhook_url)
    yield
    await dispatcher.stop()


async def release_waiters(app: web.Application) -> None:
    """On shutdown, let go of long-polls and requests hanging under a timeout fault."""
    state = app[STATE_KEY]
    state.closing.set()
    for inbox in state.inboxes.values():
        inbox.changed.set()
    for review in state.reviews.values():
        review.cancel()


def create_app(config: SandboxConfig) -> web.Application:
    app = web.Application(client_max_size=graph.MAX_UPLOAD)
    app[CONFIG_KEY] = config
    app[STATE_KEY] = SandboxState(config, load_templates(config.templates))
    app.cleanup_ctx.append(http_client)
    app.cleanup_ctx.append(webhook_dispatcher)
    app.on_shutdown.append(release_waiters)
    control.setup_routes(app)
    phones.setup_routes(app)
    emit.setup_routes(app)
    template_api.setup_routes(app)
    graph.setup_routes(app)
    return app
