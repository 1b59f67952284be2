"""The walking skeleton through real RabbitMQ and PostgreSQL: "Hola" -> the greeting menu."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from handoff.settings import Settings
from shared.bus import Bus
from shared.events import ButtonsContent
from tests.handoff.support import CUSTOMER, Probe, inbound, running_handoff

pytestmark = pytest.mark.integration


async def test_hola_gets_the_greeting_menu_with_a_human_button(
    bus: Bus, probe: Probe, settings_for: Callable[..., Settings]
) -> None:
    async with running_handoff(settings_for()):
        await bus.publish(inbound(CUSTOMER, "Hola"))
        [menu] = await probe.wait_sends(CUSTOMER, 1)
    assert isinstance(menu.content, ButtonsContent)
    titles = [b.title for b in menu.content.buttons]
    assert "Hablar con un humano" in titles
    assert menu.content.body.startswith("¡Hola!")
