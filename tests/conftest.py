"""Real RabbitMQ and PostgreSQL for the tests.

With a Docker engine, testcontainers starts both (unless RABBITMQ_URL / DATABASE_URL are set);
without one, the local services at 127.0.0.1 are used. Tests isolate themselves by unique names:
a bus prefix per test (its own exchanges and queues) and a schema per test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from shared.bus import UNROUTED_SERVICE, Bus, QueueSpec
from shared.db import drop_schema
from tests.snsfake import FakeSns, serve_fake_sns

LOCAL_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def _docker_engine() -> bool:
    if os.environ.get("MENSAJERO_NO_CONTAINERS") or not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    if os.environ.get("RABBITMQ_URL") or not _docker_engine():
        yield os.environ.get("RABBITMQ_URL", LOCAL_RABBITMQ)
        return
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management") as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL") or not _docker_engine():
        yield os.environ.get("DATABASE_URL", LOCAL_POSTGRES)
        return
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


@pytest.fixture
def unique() -> str:
    """A short unique token for names (bus prefixes, schemas)."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def bus_prefix(unique: str) -> str:
    return f"test.{unique}"


@pytest.fixture
async def bus(rabbitmq_url: str, bus_prefix: str) -> AsyncIterator[Bus]:
    bus = Bus(rabbitmq_url, bus_prefix)
    await bus.connect()
    yield bus
    # Also the gateway's parking queue and feed, which gateways under test declare on this
    # prefix (idle quorum queues left behind still cost the broker CPU).
    await bus.delete_topology(
        [
            QueueSpec(service=service, routing_keys=[], retry_tiers_ms=())
            for service in (UNROUTED_SERVICE, "gateway.feed")
        ]
    )
    await bus.close()


@pytest.fixture
async def db_schema(database_url: str, unique: str) -> AsyncIterator[str]:
    schema = f"t_{unique}"
    yield schema
    await drop_schema(database_url, schema)


@pytest.fixture
async def fake_sns() -> AsyncIterator[FakeSns]:
    """Amazon SNS's stand-in: a certificate served on 127.0.0.1 and messages signed with it."""
    async for sns in serve_fake_sns():
        yield sns
