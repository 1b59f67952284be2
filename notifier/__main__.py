"""``python -m notifier``: the notifier process."""

from __future__ import annotations

import sys

from notifier.app import create_app
from notifier.settings import Settings
from notifier.texts import TextsError
from shared.profiles import ProfileError
from shared.service import run


def main() -> None:
    try:
        run(Settings, create_app, port_setting="NOTIFIER_PORT")
    except (ProfileError, TextsError) as error:
        print(f"notifier: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
