"""Run a service's aiohttp app inside a test process, on 127.0.0.1 and an ephemeral port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from shared.service import SITE_KEY


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """Start ``app`` (its cleanup_ctx included) and yield its base URL; stop it after."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    # The app's own site when it has one (the gateway's lane, gateway.front), as in production.
    own = app.get(SITE_KEY)
    site = (
        web.TCPSite(runner, "127.0.0.1", 0) if own is None else own(runner, "127.0.0.1", 0, False)
    )
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
