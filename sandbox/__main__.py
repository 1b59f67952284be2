"""`python -m sandbox [serve]` runs the sandbox; `python -m sandbox chat --as +54...` chats."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from aiohttp import web
from pydantic import ValidationError

from sandbox.app import create_app
from sandbox.chat import chat
from sandbox.config import SandboxConfig
from shared.phone import maybe_e164


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local stand-in for Meta's WhatsApp Cloud API and for the phones.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the sandbox (the default)")
    talk = commands.add_parser("chat", help="chat from this terminal as a phone")
    talk.add_argument("--as", dest="phone", required=True, help="the phone, e.g. +5491135722871")
    talk.add_argument("--name", default="Usuario", help="the profile name the business sees")
    talk.add_argument(
        "--sandbox", default=None, help="sandbox URL (default from SANDBOX_HOST/PORT)"
    )
    return parser


def _load_config() -> SandboxConfig:
    try:
        return SandboxConfig()
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            print(f"sandbox configuration: {field}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(config: SandboxConfig) -> None:
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        access_log=None,
        shutdown_timeout=5,
        print=lambda _: logging.getLogger("sandbox").info(
            "sandbox on http://%s:%s (phone_number_id %s)",
            config.host,
            config.port,
            config.phone_number_id,
        ),
    )


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    config = _load_config()
    if args.command == "chat":
        phone = maybe_e164(args.phone)
        if phone is None:
            raise SystemExit(f"not a phone number: {args.phone}")
        url = args.sandbox or f"http://{config.host}:{config.port}"
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(chat(url, phone, args.name))
        print()
        return
    serve(config)


if __name__ == "__main__":
    main()
