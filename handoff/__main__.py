"""``python -m handoff``: the handoff service."""

from __future__ import annotations

import sys

from handoff.app import create_app
from handoff.settings import Settings
from shared.profiles import ProfileError
from shared.service import run


def main() -> None:
    try:
        run(Settings, create_app, port_setting="HANDOFF_PORT")
    except ProfileError as error:
        print(f"handoff: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
