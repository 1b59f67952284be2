"""The gateway with a publisher that stores nothing: what its own path costs (HTTP, the
signature, parsing, the runbook's log lines, metrics) without the broker's confirms.

Only for ``bench receivers``, which measures it beside the real gateway and pywa, to show where
the gateway's cost per webhook goes. Never a way to run the gateway: it answers 200 for events
it drops. ``python -m bench.storeless_gateway``, with the gateway's environment.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from gateway.app import create_app
from gateway.bootstrap import Adapters
from gateway.metrics import Metrics
from gateway.publisher import Outgoing
from gateway.settings import Settings
from shared.bus import Bus
from shared.service import run


class Dropping:
    """:class:`gateway.publisher.EventPublisher` that confirms every event at once, unstored."""

    def __init__(self, _bus: Bus, _metrics: Metrics, _timeout: float) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(self, items: Sequence[Outgoing]) -> None:
        pass


def storeless_app(settings: Settings) -> web.Application:
    return create_app(settings, Adapters(publisher=Dropping))


if __name__ == "__main__":
    run(Settings, storeless_app, port_setting="GATEWAY_PORT")
