"""Put parked messages back to work, for an operator.

    python -m shared.replay dead <service> [--limit N]
        ``<prefix>.<service>.dead`` -> ``<prefix>.<service>``: messages that kept failing (or
        could not be read) go back to their service's queue only (not to every service bound to
        their type), with fresh attempts.
    python -m shared.replay unrouted [--limit N]
        ``<prefix>.gateway.unrouted`` -> the exchange, with the routing key each event was meant
        for: events that arrived before any queue was bound for them.

``RABBITMQ_URL`` and ``BUS_PREFIX`` say which broker and deployment. Each message is
acknowledged only after its re-publication is confirmed, so a crash or a broker hiccup mid-way
loses nothing (a message may then be replayed twice; consumers deduplicate on the event id). It
stops at the first message that cannot be re-published (left in place) or after ``--limit``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from aio_pika.abc import AbstractIncomingMessage

from shared.bus import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    ROUTING_KEY_HEADER,
    UNROUTED_SERVICE,
    Bus,
    BusError,
)
from shared.logs import describe
from shared.settings import ServiceSettings, load_or_exit

# Headers a replayed message must not carry on: retry bookkeeping and the broker's own.
DROPPED_HEADERS = {
    ATTEMPT_HEADER,
    ERROR_HEADER,
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
}

# Where a message goes: (exchange, routing key); exchange None is the bus's topic exchange.
Route = Callable[[AbstractIncomingMessage], tuple[str | None, str]]


async def move(bus: Bus, source: str, route: Route, *, limit: int = 10_000) -> int:
    """Re-publish up to ``limit`` messages of queue ``source`` by ``route``; how many moved."""
    channel = await bus.connection.channel()
    moved = 0
    try:
        queue = await channel.get_queue(source, ensure=True)
        while moved < limit:
            message = await queue.get(fail=False, no_ack=False)
            if message is None:
                break
            exchange, routing_key = route(message)
            headers = {
                key: value
                for key, value in (message.headers or {}).items()
                if key not in DROPPED_HEADERS
            }
            try:
                await bus.publish_raw(
                    routing_key=routing_key,
                    body=message.body,
                    event_type=message.type or routing_key,
                    event_id=message.message_id or "",
                    correlation_id=message.correlation_id,
                    headers=headers,
                    exchange=exchange,
                )
            except BusError:
                await message.nack(requeue=True)
                raise
            await message.ack()
            moved += 1
    finally:
        await channel.close()
    return moved


async def replay_dead(bus: Bus, service: str, *, limit: int = 10_000) -> int:
    """``<prefix>.<service>.dead`` back into ``<prefix>.<service>``."""
    target = bus.names.queue(service)
    return await move(bus, bus.names.dead_queue(service), lambda _m: ("", target), limit=limit)


async def replay_unrouted(bus: Bus, *, limit: int = 10_000) -> int:
    """Parked events to the exchange, each with the routing key it was meant for."""

    def route(message: AbstractIncomingMessage) -> tuple[str | None, str]:
        key = (message.headers or {}).get(ROUTING_KEY_HEADER) or message.type or ""
        return None, str(key)

    return await move(bus, bus.names.queue(UNROUTED_SERVICE), route, limit=limit)


async def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.replay", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dead = commands.add_parser("dead", help="a service's dead-letter queue back to the service")
    dead.add_argument("service", help="sender, sender-status, handoff, notifier, ...")
    commands.add_parser("unrouted", help="the gateway's unrouted events back to the exchange")
    for command in commands.choices.values():
        command.add_argument("--limit", type=int, default=10_000, help="at most this many")
    args = parser.parse_args(argv)
    settings = load_or_exit(ServiceSettings)
    bus = Bus(settings.RABBITMQ_URL, settings.BUS_PREFIX)
    try:
        await bus.connect()
    except BusError as error:
        print(f"replay: {error}", file=sys.stderr)
        return 1
    try:
        if args.command == "dead":
            source, target = bus.names.dead_queue(args.service), bus.names.queue(args.service)
            moved = await replay_dead(bus, args.service, limit=args.limit)
        else:
            source, target = bus.names.queue(UNROUTED_SERVICE), f"exchange {bus.names.exchange}"
            moved = await replay_unrouted(bus, limit=args.limit)
    except BusError as error:
        print(f"replay stopped: {error}; the message stays in the queue", file=sys.stderr)
        return 1
    except Exception as error:  # a missing queue, mostly: say which
        print(f"replay: {describe(error)}", file=sys.stderr)
        return 1
    finally:
        await bus.close()
    print(f"moved {moved} message(s) from {source} to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main(sys.argv[1:])))
