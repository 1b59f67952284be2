from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.system.harness import System


@pytest.fixture
async def system(
    rabbitmq_url: str, database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[System]:
    """All services, the sandbox and moto as processes; logs in the test's tmp_path."""
    async with System(unique, rabbitmq_url, database_url, tmp_path) as running:
        yield running


@pytest.fixture
def system_config(rabbitmq_url: str, database_url: str, unique: str, tmp_path: Path) -> System:
    """A system's configuration (ports, prefix, schemas) without starting anything."""
    return System(unique, rabbitmq_url, database_url, tmp_path)
