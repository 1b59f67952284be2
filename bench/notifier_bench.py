"""Notifier throughput on the real bus and PostgreSQL, with the fake mailer (no SES limits).

- ``errors_folded_per_second``: identical ``error.reported`` events counted into one digest.
- ``mails_per_second``: handoff mails recorded and delivered (one per event).

Run: ``python -m bench.notifier_bench`` (needs RabbitMQ and PostgreSQL on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from notifier.app import create_app
from notifier.bootstrap import Adapters
from notifier.handlers import TABLE
from notifier.settings import Settings
from shared.bus import Bus
from shared.db import drop_schema
from shared.events import ErrorReported, HandoffUnattended, Identity
from shared.ops import REGISTRY_KEY
from tests.fakes.notifier import FakeMailer

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ERRORS = 2000
MAILS = 300


async def _until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish")
        await asyncio.sleep(0.01)


async def run() -> dict[str, float]:
    token = uuid.uuid4().hex[:8]
    prefix, schema = f"bench.notifier.{token}", f"bench_notifier_{token}"
    profiles = Path(tempfile.gettempdir()) / f"notifier-bench-{token}.json"
    profiles.write_text(
        json.dumps({"profiles": [{"id": "p", "notification_emails": ["ops@example.com"]}]}),
        "utf-8",
    )
    settings = Settings(
        RABBITMQ_URL=RABBITMQ_URL,
        DATABASE_URL=DATABASE_URL,
        BUS_PREFIX=prefix,
        DB_SCHEMA=schema,
        ERROR_LOG_EMAIL="ops@example.com",
        COMPANY_PROFILES_FILE=str(profiles),
        SES_RATE_PER_SECOND=100_000,
        NOTIFIER_CONCURRENCY=32,
        DB_POOL_SIZE=20,
    )
    mailer = FakeMailer()
    app = create_app(settings, Adapters(mailer=mailer))
    bus = Bus(RABBITMQ_URL, prefix)
    await bus.connect()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    try:
        await runner.setup()  # runs the app's cleanup_ctx: bus, database, consumer
        registry = app[REGISTRY_KEY]

        def counted() -> float:
            return registry.get_sample_value("notifier_error_occurrences_total") or 0.0

        started = time.monotonic()
        await bus.publish_many(
            [ErrorReported(service="bench", error_type="E", message="m") for _ in range(ERRORS)]
        )
        await _until(lambda: counted() >= ERRORS)
        folded = ERRORS / (time.monotonic() - started)

        before = len(mailer.sent)
        started = time.monotonic()
        await bus.publish_many(
            [
                HandoffUnattended(
                    case_code=str(i),
                    customer=Identity(phone="+5491100000000"),
                    reason="no_agent",
                    profile_id="p",
                )
                for i in range(MAILS)
            ]
        )
        await _until(lambda: len(mailer.sent) - before >= MAILS)
        mails = MAILS / (time.monotonic() - started)
    finally:
        await runner.cleanup()
        await bus.delete_topology([TABLE.spec()])
        await bus.close()
        await drop_schema(DATABASE_URL, schema)
        profiles.unlink()
    return {"errors_folded_per_second": round(folded, 1), "mails_per_second": round(mails, 1)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run())))
