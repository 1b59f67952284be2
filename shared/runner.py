"""The shape every service runs in: resources, consumers from handler tables, background loops.

A service's ``bootstrap(settings, adapters=None)`` builds a :class:`Service` without any I/O
(cosmicpython's composition root): the resources it opens, in order (the broker connection, the
database, the outbox, HTTP clients...), the queues it consumes (its handler tables bound to
their dependencies, see ``shared.handlers``) and its background loops. :func:`run_service` is
the ``cleanup_ctx`` that runs it inside the aiohttp application (aiohttp-demos ``polls``):

- start: every resource in order, then one consumer per subscription, then the loops;
- stop (SIGTERM or SIGINT, as arq's workers do): stop taking messages and let the ones in
  flight finish within ``SHUTDOWN_GRACE_SECONDS`` (those still running are given back to the
  broker), let each loop finish its round within the same grace, then close the resources in
  reverse order. A resource that failed to start closes the ones started before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from shared.bus import Bus, Consumer
from shared.handlers import Subscription
from shared.logs import describe, fields
from shared.ops import ReadinessCheck, export_dead_letters

log = logging.getLogger("mensajero.service")


class Resource(Protocol):
    """What a service opens at start and closes at stop (part of every adapter's port)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Loop:
    """Background work: ``step()`` at start and then every ``interval`` seconds, on every
    replica. A failed step is logged and tried again at the next interval."""

    name: str
    interval: float
    step: Callable[[], Awaitable[object]]


class RunningLoop:
    """A :class:`Loop` running in its own task until :meth:`stop`."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=loop.name)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.loop.step()
            except Exception as error:  # the next round tries again; the service goes on
                log.warning(
                    "%s failed; trying again in %g s: %s",
                    self.loop.name,
                    self.loop.interval,
                    describe(error),
                    exc_info=not isinstance(error, OSError),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.loop.interval)

    async def stop(self, grace: float) -> None:
        """Let the current round finish within ``grace`` seconds, then cancel it."""
        self._stopping.set()
        _done, pending = await asyncio.wait({self._task}, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class Service:
    """A service's object graph, as its bootstrap built it: what :func:`run_service` runs."""

    name: str
    bus: Bus
    registry: CollectorRegistry  # the service's own metrics registry (never the global one)
    resources: Sequence[Resource]
    subscriptions: Sequence[Subscription[Any]] = ()
    loops: Sequence[Loop] = ()
    # /readyz: each check answers whether a dependency can be used now.
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    shutdown_grace: float = 10.0


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[None]:
    """``service`` started (resources, consumers, loops) for the duration of the block."""
    async with contextlib.AsyncExitStack() as stack:
        for resource in service.resources:
            await resource.start()
            stack.push_async_callback(resource.close)
        consumers: list[Consumer] = []
        loops: list[RunningLoop] = []
        try:
            for subscription in service.subscriptions:
                consumers.append(await _consume(service.bus, subscription))
            loops = [RunningLoop(loop) for loop in service.loops]
            log.info(
                "service running",
                extra=fields(
                    service=service.name,
                    queues=",".join(s.spec.service for s in service.subscriptions),
                    loops=",".join(loop.name for loop in service.loops),
                ),
            )
            yield
        finally:
            grace = service.shutdown_grace
            await asyncio.gather(*(consumer.stop(grace=grace) for consumer in consumers))
            await asyncio.gather(*(loop.stop(grace) for loop in loops))


async def _consume(bus: Bus, subscription: Subscription[Any]) -> Consumer:
    return await bus.consume(
        subscription.spec,
        subscription,
        concurrency=subscription.concurrency,
        key=subscription.key,
        max_attempts=subscription.max_attempts,
    )


def run_service(service: Service) -> Callable[[web.Application], AsyncIterator[None]]:
    """The aiohttp ``cleanup_ctx`` entry that runs ``service`` while the application runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with running(service):
            # The depth of each consumed queue's dead letters, read at every scrape.
            bus = service.bus
            dead = [bus.names.dead_queue(s.spec.service) for s in service.subscriptions]
            export_dead_letters(app, bus, lambda: dead)
            yield

    return context
