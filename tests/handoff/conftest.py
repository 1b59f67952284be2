from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from handoff.settings import Settings
from shared.bus import Bus
from tests.handoff.support import Probe, drop_handoff_queue, make_settings
from tests.system.conftest import system  # noqa: F401  (the system tests' fixture, here too)


@pytest.fixture
async def probe(bus: Bus) -> AsyncIterator[Probe]:
    probe = Probe(bus)
    await probe.start()
    yield probe
    await drop_handoff_queue(bus)


@pytest.fixture
def settings_for(
    rabbitmq_url: str, database_url: str, bus_prefix: str, db_schema: str
) -> Callable[..., Settings]:
    def build(**extra: Any) -> Settings:
        return make_settings(rabbitmq_url, database_url, bus_prefix, db_schema, **extra)

    return build
