"""`python -m sandbox [serve]` runs the sandbox; `python -m sandbox chat --as +54...` chats
(`chat --user-id AR.123 --username ana` chats as a customer without a phone number)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from aiohttp import web
from pydantic import ValidationError

from sandbox.app import create_app
from sandbox.chat import Identity, chat
from sandbox.config import SandboxConfig
from sandbox.people import is_bsuid
from shared.phone import maybe_e164


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local stand-in for Meta's WhatsApp Cloud API and for the phones.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the sandbox (the default)")
    talk = commands.add_parser("chat", help="chat from this terminal as a customer")
    talk.add_argument("--as", dest="phone", help="the phone, e.g. +5491135722871")
    talk.add_argument(
        "--user-id",
        help="a business-scoped user id, e.g. AR.13491208655302741918 (no --as: "
        "a customer whose phone the business does not see)",
    )
    talk.add_argument("--username", help="the customer's WhatsApp username, e.g. ana.perez")
    talk.add_argument("--parent-user-id", help="a parent BSUID, e.g. AR.ENT.1181579921")
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


def _identity(args: argparse.Namespace) -> Identity:
    """Who chats; exits naming the option that is wrong."""
    if args.phone is None and args.user_id is None:
        raise SystemExit("chat needs --as <phone> or --user-id <business-scoped user id>")
    phone = None
    if args.phone is not None:
        phone = maybe_e164(args.phone)
        if phone is None:
            raise SystemExit(f"--as is not a phone number: {args.phone}")
    for option, value in (("--user-id", args.user_id), ("--parent-user-id", args.parent_user_id)):
        if value is not None and not is_bsuid(value):
            raise SystemExit(f"{option} is not a business-scoped user id (like AR.123): {value}")
    return Identity(
        name=args.name,
        phone=phone,
        user_id=args.user_id,
        username=args.username,
        parent_user_id=args.parent_user_id,
    )


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    config = _load_config()
    if args.command == "chat":
        who = _identity(args)
        url = args.sandbox or f"http://{config.host}:{config.port}"
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(chat(url, who))
        print()
        return
    serve(config)


if __name__ == "__main__":
    main()
