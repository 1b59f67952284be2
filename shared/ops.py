"""The operations endpoints every service serves: ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz`` says the process is alive; ``/readyz`` checks the broker and the database now.

Each service's registry (:func:`service_registry`) carries, besides its own metrics, the process
and platform collectors and ``mensajero_build_info{service, version}``. Queues that hold messages
for an operator (dead letters, the gateway's unrouted events) are exported by the service that
owns them, read from the broker when ``/metrics`` is scraped (:func:`export_queue_depths`), so an
alert needs nothing but the services' own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from shared.logs import describe

log = logging.getLogger("mensajero.ops")

ReadinessCheck = Callable[[], Awaitable[bool]]
ScrapeHook = Callable[[], Awaitable[None]]

REGISTRY_KEY = web.AppKey("metrics_registry", CollectorRegistry)
CHECKS_KEY = web.AppKey("readiness_checks", dict[str, ReadinessCheck])
SCRAPE_HOOKS_KEY = web.AppKey("scrape_hooks", list[ScrapeHook])
# A scrape must answer even when the broker does not: a hook gets this long.
SCRAPE_HOOK_TIMEOUT_SECONDS = 2.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEAD_LETTERS_KEY = web.AppKey("dead_letter_gauge", Gauge)


def project_version() -> str:
    try:
        return version("mensajero")
    except PackageNotFoundError:  # run from a tree that was never installed
        return "0+unknown"


def service_registry(service: str) -> CollectorRegistry:
    """A service's own registry: the process and platform collectors and its build info."""
    registry = CollectorRegistry()
    # What the global registry has by default, on this one (several services share a test run).
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    build_info(registry, service)
    return registry


def build_info(registry: CollectorRegistry, service: str) -> None:
    Gauge(
        "mensajero_build_info",
        "Always 1: the service and the Mensajero version this process runs.",
        ["service", "version"],
        registry=registry,
        multiprocess_mode="max",
    ).labels(service, project_version()).set(1)


class QueueCounter(Protocol):
    async def message_count(self, queue: str) -> int | None: ...


def queue_depth_gauge(registry: CollectorRegistry, name: str, documentation: str) -> Gauge:
    return Gauge(
        name,
        documentation,
        ["queue"],
        registry=registry,
        # With several processes behind one port (the gateway's workers): the latest reading.
        multiprocess_mode="mostrecent",
    )


def export_queue_depths(
    app: web.Application,
    gauge: Gauge,
    broker: QueueCounter,
    queues: Callable[[], Iterable[str]],
) -> None:
    """At each scrape, set ``gauge{queue}`` to each queue's depth; a queue the broker cannot
    count now (unreachable, or not declared yet) has no series rather than a stale one."""

    async def refresh() -> None:
        for queue in queues():
            count = await broker.message_count(queue)
            if count is None:
                with contextlib.suppress(KeyError):
                    gauge.remove(queue)
            else:
                gauge.labels(queue).set(count)

    app[SCRAPE_HOOKS_KEY].append(refresh)


def export_dead_letters(
    app: web.Application, broker: QueueCounter, queues: Callable[[], Iterable[str]]
) -> None:
    """``mensajero_dead_letter_messages{queue}`` for the dead-letter queues of this service."""
    gauge = app.get(DEAD_LETTERS_KEY)
    if gauge is None:
        gauge = app[DEAD_LETTERS_KEY] = queue_depth_gauge(
            app[REGISTRY_KEY],
            "mensajero_dead_letter_messages",
            "Messages in this service's dead-letter queue now. Broker-wide: every replica "
            "reports the same value (aggregate with max, not sum).",
        )
    export_queue_depths(app, gauge, broker, queues)


async def _run_scrape_hooks(app: web.Application) -> None:
    for hook in app[SCRAPE_HOOKS_KEY]:
        try:
            await asyncio.wait_for(hook(), SCRAPE_HOOK_TIMEOUT_SECONDS)
        except Exception as error:  # the scrape still answers, with what it has
            log.debug("a metrics refresh failed: %s", describe(error))


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    await _run_scrape_hooks(request.app)
    shared_dir = os.environ.get(MULTIPROC_ENV)
    if shared_dir:
        # Several processes serve this port (the gateway's workers): whichever answers reports
        # the sum over all of them, from the files they keep their values in. Process metrics
        # (CPU, memory) would be only the answering worker's, so they are left out here.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, shared_dir)  # type: ignore[no-untyped-call]
        PlatformCollector(registry=registry)
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
    app[SCRAPE_HOOKS_KEY] = []
    for path, handler in (("/metrics", metrics), ("/healthz", healthz), ("/readyz", readyz)):
        app.router.add_get(path, wrap(handler) if wrap is not None else handler)


# ---------------------------------------------------------------------------- container probe

# Where each process answers whether it is ready: (port variable, its default, path).
READINESS = {
    "gateway": ("GATEWAY_PORT", 8080, "/readyz"),
    "sender": ("SENDER_PORT", 9101, "/readyz"),
    "handoff": ("HANDOFF_PORT", 9102, "/readyz"),
    "notifier": ("NOTIFIER_PORT", 9103, "/readyz"),
    "sandbox": ("SANDBOX_PORT", 8090, "/_sandbox/health"),
}


def readiness_url(argv: list[str], env: Mapping[str, str]) -> str | None:
    """The readiness URL of a process started as ``python -m <service>`` (the image's
    entrypoint), or None when it is not one of Mensajero's."""
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    found = READINESS.get(module or "")
    if found is None:
        return None
    variable, default, path = found
    return f"http://127.0.0.1:{env.get(variable, default)}{path}"


def probe(url: str, timeout: float = 3.0) -> int:
    """0 when ``url`` answers 200, else 1 with the reason on stderr (a container healthcheck)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    """``python -m shared.ops [URL]``: probe URL, or the readiness endpoint of the container's
    main process (PID 1), for the image's HEALTHCHECK."""
    if len(argv) > 1:
        return probe(argv[1])
    with open("/proc/1/cmdline", "rb") as cmdline:
        command = [part.decode() for part in cmdline.read().split(b"\0") if part]
    url = readiness_url(command, os.environ)
    if url is None:
        print(f"no readiness endpoint known for {' '.join(command)}", file=sys.stderr)
        return 1
    return probe(url)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
