"""The operations endpoints every service serves: ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz`` says the process is alive; ``/readyz`` checks the broker and the database now.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

ReadinessCheck = Callable[[], Awaitable[bool]]

REGISTRY_KEY = web.AppKey("metrics_registry", CollectorRegistry)
CHECKS_KEY = web.AppKey("readiness_checks", dict[str, ReadinessCheck])


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared_dir:
        # Several processes serve this port (the gateway's workers): whichever answers reports
        # the sum over all of them, from the files they keep their values in.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, shared_dir)  # type: ignore[no-untyped-call]
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[CHECKS_KEY]
    results = {name: await check() for name, check in checks.items()}
    ready = all(results.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": results},
        status=200 if ready else 503,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_ops_routes(
    app: web.Application,
    registry: CollectorRegistry,
    checks: dict[str, ReadinessCheck],
    *,
    wrap: Callable[[Handler], Handler] | None = None,
) -> None:
    """Mount the three endpoints on ``app``; ``checks`` may be filled later (at start-up).

    ``wrap``: applied to each handler (the gateway guards its routes instead of a middleware).
    """
    app[REGISTRY_KEY] = registry
    app[CHECKS_KEY] = checks
    for path, handler in (("/metrics", metrics), ("/healthz", healthz), ("/readyz", readyz)):
        app.router.add_get(path, wrap(handler) if wrap is not None else handler)
