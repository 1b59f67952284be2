"""``python -m sender``: the sender service; ``python -m sender templates [sync]``: the
account's message templates (see sender/template_setup.py)."""

from __future__ import annotations

import sys

from sender.app import create_app
from sender.settings import Settings
from shared.profiles import ProfileError
from shared.service import run


def main(argv: list[str]) -> None:
    if argv[:1] == ["templates"]:
        from sender.template_setup import main as templates

        raise SystemExit(templates(argv[1:]))
    try:
        run(Settings, create_app, port_setting="SENDER_PORT")
    except ProfileError as error:
        print(f"sender: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(sys.argv[1:])
