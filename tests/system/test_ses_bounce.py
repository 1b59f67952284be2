"""A bounce reaches the notifier the way AWS sends it: SES -> SNS -> the gateway's /webhook/ses.

Real processes (gateway, notifier, moto as SES), real RabbitMQ and PostgreSQL; the SNS message is
signed with a certificate the test makes and serves on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.bus import Bus
from shared.events import ErrorReported
from tests.helpers import wait_for
from tests.snsfake import FakeSns
from tests.system.harness import System

pytestmark = pytest.mark.integration


@pytest.fixture
async def ses_system(
    rabbitmq_url: str, database_url: str, unique: str, tmp_path: Path, fake_sns: FakeSns
) -> AsyncIterator[System]:
    system = System(unique, rabbitmq_url, database_url, tmp_path)
    system.extra_env["SNS_TRUSTED_CERT_URL_PREFIXES"] = f'["{fake_sns.base}/"]'
    system.extra_env["ERROR_LOG_EMAIL"] = f"ops-{unique}@example.com"
    async with system:
        yield system


async def test_bounce_through_the_gateway_suppresses_the_address(
    ses_system: System, fake_sns: FakeSns, unique: str
) -> None:
    system = ses_system
    address = f"ops-{unique}@example.com"
    bus = Bus(system.rabbitmq_url, system.prefix)
    await bus.connect()
    try:
        await bus.publish(ErrorReported(service="test", error_type="First", message="uno"))
        await wait_for(lambda: system.mails_to(address), timeout=30, message="the first mail")

        bounce = {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": address}],
                "feedbackId": f"feedback-{unique}",
            },
            "mail": {"messageId": f"ses-{unique}"},
        }
        assert system.session is not None
        async with system.session.post(
            f"{system.url('gateway')}/webhook/ses",
            data=json.dumps(fake_sns.message(message=bounce, version="2")).encode(),
            headers={"Content-Type": "text/plain; charset=UTF-8"},
        ) as response:
            assert response.status == 200, await response.text()

        async def suppressed() -> bool:
            total = await system.metric_total("notifier", "notifier_addresses_suppressed_total")
            return total >= 1

        await wait_for(suppressed, timeout=30, message="the address on the suppression list")

        await bus.publish(ErrorReported(service="test", error_type="Second", message="dos"))

        async def skipped() -> bool:
            total = await system.metric_total("notifier", "notifier_emails_suppressed_total")
            return total >= 1

        await wait_for(skipped, timeout=30, message="the next mail skipped")
        assert len(await system.mails_to(address)) == 1
        # Log lines are written by a background thread every 50 ms: wait for it.
        await wait_for(
            lambda: "suppress" in system.tail("notifier", 200).lower(),
            message="the suppression in the notifier's log",
        )
    finally:
        await bus.close()
