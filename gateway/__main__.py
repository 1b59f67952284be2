"""``python -m gateway``: the webhook gateway on GATEWAY_PORT."""

from __future__ import annotations

import gc

from gateway.app import create_app
from gateway.settings import Settings
from shared.service import run

if __name__ == "__main__":
    # A webhook allocates many short-lived objects (its JSON, events, futures) and a batch keeps
    # a thousand events alive until the broker confirms them. With the default threshold (700)
    # the collector ran hundreds of times per batch, re-walking the survivors and, in its full
    # passes, every imported module's objects: about 40 ms of a 1,000-update webhook. Freezing
    # what the imports created and collecting less often cut that to a few ms.
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    run(Settings, create_app, port_setting="GATEWAY_PORT")
