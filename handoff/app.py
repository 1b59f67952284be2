"""The handoff service: routes every inbound message between the bot, customers and agents."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aio_pika
import aiormq
from aiohttp import web

from handoff.handlers import Handlers, message_key
from handoff.metrics import HandoffMetrics
from handoff.service import Clock, Handoff, HandoffConfig, system_clock
from handoff.settings import Settings
from handoff.timers import background
from shared.bus import Bus, QueueSpec
from shared.events import (
    BotMessage,
    HandoffClaimed,
    HandoffClosed,
    HandoffRequestCommand,
    HandoffRequested,
    HandoffUnattended,
    InboundMessage,
    MessageFailed,
    MessageSent,
)
from shared.ops import ReadinessCheck, add_ops_routes, service_registry
from shared.profiles import load_profiles
from shared.service import BUS_KEY, POOL_KEY, bus_context, database_context

log = logging.getLogger("mensajero.handoff")

SETTINGS_KEY = web.AppKey("handoff_settings", Settings)
CORE_KEY = web.AppKey("handoff_core", Handoff)
METRICS_KEY = web.AppKey("handoff_metrics", HandoffMetrics)


def queue_spec() -> QueueSpec:
    return QueueSpec(
        service="handoff",
        routing_keys=[
            InboundMessage.TYPE,
            MessageSent.TYPE,
            MessageFailed.TYPE,
            HandoffRequestCommand.TYPE,
        ],
        # One replica consumes at a time (the others stand by), so a customer's messages are
        # handled in the order they arrived even with several replicas running.
        single_active_consumer=True,
    )


# What handoff publishes for the notifier and integrations. A mandatory publish nobody is bound
# to comes back unroutable (an error, by design of the bus), and ``handoff.requested``,
# ``handoff.claimed`` and ``bot.message`` may have no listener yet: a bounded feed queue keeps
# them routable and lets an integration read the recent history. Oldest dropped first.
FEED_EVENTS = (
    HandoffRequested.TYPE,
    HandoffClaimed.TYPE,
    HandoffUnattended.TYPE,
    HandoffClosed.TYPE,
    BotMessage.TYPE,
)
FEED_MAX_LENGTH = 10_000
FEED_TTL_MS = 7 * 24 * 3600 * 1000


def feed_queue_name(bus: Bus) -> str:
    return f"{bus.names.queue('handoff')}.feed"


FEED_ARGUMENTS = {
    "x-max-length": FEED_MAX_LENGTH,
    "x-overflow": "drop-head",
    "x-message-ttl": FEED_TTL_MS,
}


async def declare_feed(bus: Bus) -> None:
    """The feed, a quorum queue (it survives a broker node's loss). A classic feed declared by
    an earlier version cannot change type: it is kept, with a warning saying how to move on."""
    name = feed_queue_name(bus)
    channel = await bus.connection.channel()
    try:
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum", **FEED_ARGUMENTS}
        )
    except aiormq.exceptions.ChannelPreconditionFailed:
        log.warning(
            "%s is a classic queue from an earlier version and lives on one broker node; "
            "delete it (rabbitmqctl delete_queue %s: its history for integrations goes with "
            "it) and handoff declares it again as a quorum queue at its next start",
            name,
            name,
        )
        channel = await bus.connection.channel()
        queue = await channel.declare_queue(name, durable=True, arguments=FEED_ARGUMENTS)
    try:
        exchange = await channel.declare_exchange(
            bus.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for key in FEED_EVENTS:
            await queue.bind(exchange, routing_key=key)
    finally:
        await channel.close()


def build_core(settings: Settings, clock: Clock = system_clock) -> Handoff:
    profiles = load_profiles(settings.COMPANY_PROFILES_FILE)
    config = HandoffConfig(
        agents=settings.agent_numbers,
        queue_timeout=settings.HANDOFF_QUEUE_TIMEOUT_SECONDS,
        idle_timeout=settings.HANDOFF_IDLE_TIMEOUT_SECONDS,
        bot_mode=settings.BOT_MODE,
    )
    return Handoff(profiles, config, clock)


async def consumers(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    pool, bus = app[POOL_KEY], app[BUS_KEY]
    core, metrics = app[CORE_KEY], app[METRICS_KEY]
    handlers = Handlers(pool, bus, core, metrics)
    async with background(
        pool,
        bus,
        core,
        metrics,
        interval=settings.HANDOFF_TIMER_POLL_SECONDS,
        outbox_after=settings.HANDOFF_OUTBOX_RELAY_AFTER_SECONDS,
    ):
        await declare_feed(bus)
        consumer = await bus.consume(
            queue_spec(), handlers, concurrency=settings.HANDOFF_CONCURRENCY, key=message_key
        )
        yield
        await consumer.stop(grace=settings.SHUTDOWN_GRACE_SECONDS)


def create_app(settings: Settings, *, clock: Clock = system_clock) -> web.Application:
    app = web.Application()
    registry = service_registry("handoff")
    checks: dict[str, ReadinessCheck] = {}
    add_ops_routes(app, registry, checks)
    app[SETTINGS_KEY] = settings
    app[CORE_KEY] = build_core(settings, clock)  # profile errors stop the start-up here
    app[METRICS_KEY] = HandoffMetrics(registry)
    timeout = settings.STARTUP_TIMEOUT_SECONDS
    app.cleanup_ctx.append(bus_context(settings, timeout))
    app.cleanup_ctx.append(database_context(settings, "handoff", timeout))
    app.cleanup_ctx.append(consumers)
    return app
