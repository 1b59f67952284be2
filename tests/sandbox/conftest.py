"""Fixtures: a sandbox on 127.0.0.1 (ephemeral port) and a webhook sink beside it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from tests.sandbox.support import Api, Sink, StartSandbox, make_config
from tests.services import running


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings under test come from the tests, not from the machine's environment."""
    for name in list(os.environ):
        if name.startswith(("SANDBOX_", "META_WA_")) or name == "LOG_LEVEL":
            monkeypatch.delenv(name)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    sink = Sink()
    async with running(sink.app()) as base:
        sink.url = f"{base}/webhook"
        yield sink


@pytest.fixture
async def start_sandbox(sink: Sink) -> AsyncIterator[StartSandbox]:
    """Start a sandbox posting to the sink; keyword arguments override the test config."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def start(config: SandboxConfig | None = None, **overrides: Any) -> Api:
            if config is None:
                config = make_config(**{"webhook_url": sink.url, **overrides})
            base = await stack.enter_async_context(running(create_app(config)))
            return Api(session, base)

        yield start


@pytest.fixture
async def api(start_sandbox: StartSandbox) -> Api:
    return await start_sandbox()
