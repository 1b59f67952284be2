"""``python -m gateway``: the webhook gateway on GATEWAY_PORT."""

from __future__ import annotations

from gateway.app import create_app
from gateway.settings import Settings
from shared.service import run

if __name__ == "__main__":
    run(Settings, create_app, port_setting="GATEWAY_PORT")
