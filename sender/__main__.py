"""``python -m sender``: the sender service."""

from sender.app import create_app
from sender.settings import Settings
from shared.service import run

if __name__ == "__main__":
    run(Settings, create_app, port_setting="SENDER_PORT")
