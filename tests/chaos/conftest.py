"""The chaos run: one system of its own for the whole suite, and its table at the end.

Its folder (``CHAOS_DIR``, default the system's temporary folder) keeps the services', the
broker's and the database's logs and the table (``chaos-table.md``); the broker's and the
database's data live in its ``state`` folder, removed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from shared.bus import Bus
from tests.chaos.harness import CHAOS_ENV, Chaos, ChaosSystem
from tests.chaos.infra import PgCluster, RabbitNode, new_run_id
from tests.chaos.report import render, save
from tests.chaos.traffic import Arrivals, Chat

CUSTOMERS = 10
# What the summary prints: filled by the fixture.
RUN: dict[str, Any] = {}


def run_folder(run_id: str) -> Path:
    base = Path(os.environ.get("CHAOS_DIR") or tempfile.gettempdir())
    folder = base / f"mensajero-chaos-{time.strftime('%Y%m%d-%H%M%S')}-{run_id}"
    (folder / "logs").mkdir(parents=True)
    (folder / "state").mkdir()
    return folder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chaos() -> AsyncIterator[Chaos]:
    run_id = new_run_id()
    folder = run_folder(run_id)
    logs, state = folder / "logs", folder / "state"
    node, cluster = RabbitNode(state, logs, run_id), PgCluster(state, logs)
    RUN.update(folder=folder, started=time.monotonic(), rows=[], leftovers=[])
    found: Chaos | None = None
    try:
        await cluster.init()
        await cluster.start()
        await node.start()
        system = ChaosSystem(run_id, node.url, cluster.url, logs, extra_env=dict(CHAOS_ENV))
        async with system:
            bus = Bus(node.url, system.prefix, name="chaos-run")
            await bus.connect()
            try:
                found = Chaos(
                    run_id, folder, node, cluster, system, bus, Chat(system, CUSTOMERS),
                    Arrivals(system),
                )  # fmt: skip
                found.pids.update(p.pid for p in system.processes.values())
                RUN["rows"] = found.rows
                await found.chat.open_cases()
                yield found
            finally:
                await bus.close()
    finally:
        await node.remove()
        await cluster.remove()
        leftovers = found.leftovers(state) if found else []
        if not leftovers:
            shutil.rmtree(state, ignore_errors=True)
        RUN["leftovers"] = leftovers
        RUN["wall"] = time.monotonic() - RUN["started"]
    assert not leftovers, leftovers


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RUN.get("folder"):
        return  # no chaos run in this session
    text = render(RUN["rows"], RUN["leftovers"], RUN.get("wall"))
    path = save(text, RUN["folder"])
    terminalreporter.section("chaos: lost and duplicated per scenario")
    terminalreporter.write(text)
    terminalreporter.write_line(f"table saved to {path}; logs in {RUN['folder'] / 'logs'}")
