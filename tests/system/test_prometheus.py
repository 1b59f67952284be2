"""The dashboard and the alerts against a real Prometheus scraping a running system.

Debian's `prometheus` binary, started here on 127.0.0.1 with a generated configuration, scrapes
the four services every second and evaluates deploy/prometheus/rules.yml. After a short
conversation through the sandbox (a customer asks for a person, the agent claims, answers and
closes; another customer's reply fails), every query of deploy/grafana/mensajero.json returns at
least one series; then the sandbox's expired-token fault takes MensajeroCircuitOpen to firing
(its `for:` shortened to a second for the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from deploy.check import dashboard_queries
from shared.settings import SANDBOX_DEFAULTS
from tests.deploy.support import DEPLOY, SERVICES, dashboard
from tests.helpers import wait_for
from tests.system.harness import System, free_port
from tests.system.phones import Phone

pytestmark = pytest.mark.integration

AGENT = SANDBOX_DEFAULTS["AGENT_WHATSAPP_NUMBER"]
CIRCUIT_ALERT = "MensajeroCircuitOpen"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    assert found, "the prometheus binary is needed: apt-get install prometheus (as .ci/run does)"
    return found


def rules_for_the_test(directory: Path) -> Path:
    """rules.yml with the circuit alert's `for:` shortened, so that it fires within the test."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text("utf-8"))
    (alert,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == CIRCUIT_ALERT]
    assert alert["for"] == "5m"
    alert["for"] = "1s"
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(rules), "utf-8")
    return path


def configuration(system: System, rules: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        # The jobs are named after the services, as the ServiceMonitor names them.
        "scrape_configs": [
            {
                "job_name": service,
                "static_configs": [{"targets": [f"127.0.0.1:{system.ports[service]}"]}],
            }
            for service in SERVICES
        ],
    }


class Prometheus:
    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory = directory
        self.config = directory / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config), "utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None
        self.session = aiohttp.ClientSession()

    async def __aenter__(self) -> Prometheus:
        log = await asyncio.to_thread((self.directory / "prometheus.log").open, "wb")
        self.process = await asyncio.create_subprocess_exec(
            prometheus_binary(),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        async def ready() -> bool:
            assert self.process is not None and self.process.returncode is None, self.log()
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.get(f"{self.url}/-/ready") as response:
                    return response.status == 200
            return False

        try:
            await wait_for(ready, timeout=30, interval=0.1, message="Prometheus ready")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text("utf-8", "replace")[-3000:]

    async def api(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as response:
            body = await response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    async def series(self, query: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=query)
        assert data["resultType"] == "vector", (query, data["resultType"])
        result: list[dict[str, Any]] = data["result"]
        return result


@pytest.fixture
async def system(
    rabbitmq_url: str, database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[System]:
    # Probes every 2 s once the circuit is open: the held message comes back quickly.
    extra = {"SENDER_CIRCUIT_PROBE_SECONDS": "2"}
    async with System(unique, rabbitmq_url, database_url, tmp_path, extra_env=extra) as running:
        yield running


@pytest.fixture
async def prometheus(system: System, tmp_path: Path) -> AsyncIterator[Prometheus]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    config = configuration(system, rules_for_the_test(directory))
    async with Prometheus(directory, config) as running:
        yield running


async def all_targets_up(prometheus: Prometheus) -> bool:
    targets = (await prometheus.api("targets"))["activeTargets"]
    return sorted(t["labels"]["job"] for t in targets if t["health"] == "up") == sorted(SERVICES)


async def conversation(system: System) -> None:
    """A customer asks for a person, the agent claims, answers and closes, the customer rates the
    case and is back with the bot; a second customer's answer fails (Meta's 131026:
    undeliverable)."""
    customer = Phone(system, "+5491135722871", "Usuario")
    agent = Phone(system, AGENT, "Agente")
    await customer.write("Hola")
    await customer.receives("asistente virtual")
    await customer.write("quiero hablar con un humano")
    alert = await agent.receives("handoff_agent_alert")
    await agent.write("Hola, soy Ana. ¿En qué te ayudo?", context_id=alert["wamid"])
    await customer.receives("Hola, soy Ana")
    seen = len(await customer.inbox())
    await agent.write("/fin")
    rating = await customer.receives("¿Cómo te atendimos?", after=seen)  # the one-tap rating
    await customer.taps(rating, "😀 Muy bien")
    await customer.receives("¡Gracias por contarnos!", after=seen)
    seen = len(await customer.inbox())
    await customer.write("Hola")  # back with the bot
    await customer.receives("asistente virtual", after=seen)

    unreachable = "+5491144440000"
    await system.post_json(
        f"{system.url('sandbox')}/_sandbox/faults",
        {"recipient": unreachable, "error_code": 131026, "count": 1},
    )
    await Phone(system, unreachable, "Sin WhatsApp").write("Hola")

    async def failed() -> bool:
        return await system.metric_total("sender", "whatsapp_messages_failed_total") >= 1

    await wait_for(failed, timeout=30, message="the unreachable customer's answer failed")

    async def read() -> bool:
        return await system.metric_total("sender", "whatsapp_messages_read_total") >= 3

    await wait_for(read, timeout=30, message="statuses up to read counted")


async def test_every_panel_has_data_and_the_expired_token_fires_the_circuit_alert(
    system: System, prometheus: Prometheus
) -> None:
    await wait_for(
        lambda: all_targets_up(prometheus), timeout=30, interval=0.2, message="every target up"
    )
    rule_groups = (await prometheus.api("rules"))["groups"]
    assert {g["name"] for g in rule_groups} == {"mensajero.recording", "mensajero.alerts"}

    await conversation(system)

    # The sandbox rejects the token from now on: Meta's 190. The next answer opens the circuit.
    await system.post_json(f"{system.url('sandbox')}/_sandbox/faults", {"expire_token": True})
    await Phone(system, "+5491155550000", "Otro").write("Hola")

    async def circuit_alert_firing() -> bool:
        alerts = (await prometheus.api("alerts"))["alerts"]
        return any(
            a["labels"]["alertname"] == CIRCUIT_ALERT and a["state"] == "firing" for a in alerts
        )

    await wait_for(
        circuit_alert_firing, timeout=60, interval=0.5, message=f"{CIRCUIT_ALERT} firing"
    )
    (firing,) = [
        a
        for a in (await prometheus.api("alerts"))["alerts"]
        if a["labels"]["alertname"] == CIRCUIT_ALERT
    ]
    assert firing["labels"]["severity"] == "critical"
    assert firing["labels"]["phone_number_id"] == SANDBOX_DEFAULTS["META_WA_PHONE_NUMBER_ID"]
    assert firing["annotations"]["runbook_url"] == "docs/runbook.md#mensajerocircuitopen"

    queries = dashboard_queries(dashboard())
    empty: list[str] = []

    async def every_query_has_a_series() -> bool:
        empty[:] = [
            f"{title}: {query}" for title, query in queries if not await prometheus.series(query)
        ]
        return not empty

    started = time.monotonic()
    try:
        await wait_for(every_query_has_a_series, timeout=60, interval=1.0)
    except AssertionError:
        raise AssertionError("queries with no series:\n" + "\n".join(empty)) from None
    print(
        f"{len(queries)} dashboard queries each returned at least one series"
        f" ({time.monotonic() - started:.1f} s after the alert); {CIRCUIT_ALERT} firing"
    )

    # Every recording rule and alert evaluates without error.
    for group in (await prometheus.api("rules"))["groups"]:
        for rule in group["rules"]:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
