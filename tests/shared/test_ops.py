"""Every service's registry: process and platform collectors, build info, and the dead-letter
depth read from the real broker at each scrape."""

from __future__ import annotations

import aio_pika
import aiohttp
import pytest
from aiohttp import web

from shared.bus import Bus, QueueSpec
from shared.ops import add_ops_routes, export_dead_letters, project_version, service_registry
from tests.helpers import wait_for
from tests.services import running


def test_a_service_registry_has_the_process_platform_and_build_metrics() -> None:
    registry = service_registry("sender")
    assert registry.get_sample_value("process_resident_memory_bytes", {}) is not None
    assert registry.get_sample_value("process_cpu_seconds_total", {}) is not None
    names = {metric.name for metric in registry.collect()}
    assert {"python_info", "python_gc_collections"} <= names
    build = {"service": "sender", "version": project_version()}
    assert registry.get_sample_value("mensajero_build_info", build) == 1.0
    assert project_version() == "0.1.0"


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


def sample(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.integration
async def test_dead_letter_depth_is_read_from_the_broker_at_each_scrape(bus: Bus) -> None:
    spec = QueueSpec(service="opsdepth", routing_keys=["nothing.#"])
    await bus.declare_service_queue(spec)
    dead = bus.names.dead_queue("opsdepth")
    app = web.Application()
    add_ops_routes(app, service_registry("opsdepth"), {})
    export_dead_letters(app, bus, lambda: [dead, f"{dead}.not-declared"])
    series = f'mensajero_dead_letter_messages{{queue="{dead}"}}'
    async with running(app) as url:
        text = await scrape(url)
        assert sample(text, series) == 0.0
        # A queue the broker cannot count has no series, not a made-up value.
        assert "not-declared" not in text
        channel = await bus.connection.channel()
        for _ in range(2):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=dead)

        async def two() -> bool:
            return sample(await scrape(url), series) == 2.0

        await wait_for(two, message="two dead letters on the next scrape")


async def test_a_webhook_the_guard_answered_503_is_counted_as_an_error() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from gateway.app import METRICS_KEY, guarded
    from gateway.metrics import Metrics

    async def broken(request: web.Request) -> web.Response:
        raise KeyError("a bug")

    registry = service_registry("gateway")
    app = web.Application()
    app[METRICS_KEY] = Metrics(registry)
    app.router.add_post("/webhook/whatsapp", guarded(broken))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/webhook/whatsapp", data=b"{}")
        assert response.status == 503
    labels = {"endpoint": "whatsapp", "outcome": "error"}
    assert registry.get_sample_value("gateway_webhook_requests_total", labels) == 1.0


def test_the_container_probe_finds_the_service_of_the_main_process() -> None:
    from shared.ops import readiness_url

    env = {"SENDER_PORT": "9201"}
    assert readiness_url(["python", "-m", "sender"], env) == "http://127.0.0.1:9201/readyz"
    assert readiness_url(["python", "-m", "gateway"], {}) == "http://127.0.0.1:8080/readyz"
    sandbox = readiness_url(["/opt/mensajero/bin/python", "-m", "sandbox"], {})
    assert sandbox == "http://127.0.0.1:8090/_sandbox/health"
    assert readiness_url(["python", "-m", "moto.server", "-p", "8095"], {}) is None
    assert readiness_url(["python", "-m"], {}) is None


async def test_the_container_probe_passes_only_on_200(unused_tcp_port: int) -> None:
    import asyncio

    from shared.ops import probe

    async def ready(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    async def busy(_request: web.Request) -> web.Response:
        return web.json_response({"status": "not ready"}, status=503)

    app = web.Application()
    app.router.add_get("/ok", ready)
    app.router.add_get("/busy", busy)
    async with running(app) as url:
        assert await asyncio.to_thread(probe, f"{url}/ok") == 0
        assert await asyncio.to_thread(probe, f"{url}/busy") == 1
    assert await asyncio.to_thread(probe, f"http://127.0.0.1:{unused_tcp_port}/readyz") == 1
