"""One service queue's handlers: one typed handler per event type, in one table.

A service module declares its table and one entry per event type it handles::

    TABLE: HandlerTable[Deps] = HandlerTable("handoff", single_active_consumer=True)
    TABLE.on(InboundMessage, on_inbound, key=customer_key)

The queue binds exactly the routing keys of the table's event types (no list kept by hand), a
delivery goes to the handler of its event's type (no ``isinstance`` chain), and an event the
table has no handler for is dead-lettered with the reason (``Reject``), never dropped: a binding
left behind by an older version, or a missing entry, shows in the log and in ``<queue>.dead``.

Handlers take the service's dependencies first, ``async def on_inbound(deps, event, delivery)``
(cosmicpython's handlers by message type, the dependencies injected at bootstrap); each entry
keeps its event type's typing. The bootstrap binds the table to the dependencies and to the
settings that shape consumption, ``TABLE.bind(deps, concurrency=...)``: that
:class:`Subscription` is what ``shared.runner`` consumes. A service with several queues (the
sender has two) has a table per queue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shared.bus import DEFAULT_RETRY_TIERS_MS, Delivery, QueueSpec, Reject
from shared.events import Event
from shared.partitions import PartitionLeases

D = TypeVar("D")
E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class _Entry(Generic[D]):
    handler: Callable[[D, Any, Delivery], Awaitable[None]]
    # Messages with the same key run one after another, in arrival order (None: no order).
    key: Callable[[Any], str | None] | None
    # The same, for a key that needs the service's dependencies (what it has learnt).
    deps_key: Callable[[D, Any], str | None] | None = None


class HandlerTable(Generic[D]):
    """The handlers of the queue ``<BUS_PREFIX>.<queue>``, by event type."""

    def __init__(
        self, queue: str, *, single_active_consumer: bool = False, delivery_limit: int = 20
    ) -> None:
        self.queue = queue
        # One consumer at a time across replicas (the others stand by): keeps per-key order.
        self.single_active_consumer = single_active_consumer
        self.delivery_limit = delivery_limit
        self._entries: dict[type[Event], _Entry[D]] = {}

    def on(
        self,
        event_type: type[E],
        handler: Callable[[D, E, Delivery], Awaitable[None]],
        *,
        key: Callable[[E], str | None] | None = None,
        deps_key: Callable[[D, E], str | None] | None = None,
    ) -> None:
        """``handler`` handles every ``event_type`` this queue receives (one per type); ``key``
        (or ``deps_key``, given the dependencies too) orders the events of one key."""
        if event_type in self._entries:
            raise ValueError(f"queue {self.queue}: {event_type.__name__} has a handler already")
        if key is not None and deps_key is not None:
            raise ValueError(f"queue {self.queue}: {event_type.__name__} has two keys")
        self._entries[event_type] = _Entry(handler, key, deps_key)

    @property
    def event_types(self) -> tuple[type[Event], ...]:
        return tuple(self._entries)

    @property
    def routing_keys(self) -> list[str]:
        return [event_type.TYPE for event_type in self._entries]

    def spec(
        self, *, retry_tiers_ms: Sequence[int] = DEFAULT_RETRY_TIERS_MS, partitions: int = 0
    ) -> QueueSpec:
        """The queue's topology: bound to the table's event types (``partitions`` > 0: split
        into that many partition queues by the events' ``partition_key``, see shared.bus)."""
        return QueueSpec(
            service=self.queue,
            routing_keys=self.routing_keys,
            delivery_limit=self.delivery_limit,
            retry_tiers_ms=retry_tiers_ms,
            single_active_consumer=self.single_active_consumer,
            partitions=partitions,
        )

    def bind(
        self,
        deps: D,
        *,
        concurrency: int = 16,
        retry_tiers_ms: Sequence[int] = DEFAULT_RETRY_TIERS_MS,
        max_attempts: int | None = None,
        leases: PartitionLeases | None = None,
    ) -> Subscription[D]:
        """The table with its dependencies, ready to consume (``max_attempts`` None: one per
        retry tier, then the dead-letter queue). With ``leases``, the queue is split into
        ``leases.partitions`` partitions and this replica consumes the ones it holds."""
        partitions = leases.partitions if leases is not None else 0
        spec = self.spec(retry_tiers_ms=retry_tiers_ms, partitions=partitions)
        return Subscription(self, deps, spec, concurrency, max_attempts, leases)

    def entry(self, event_type: type[Event]) -> _Entry[D] | None:
        return self._entries.get(event_type)


class Subscription(Generic[D]):
    """A handler table bound to its dependencies: the consumer's handler and ordering key."""

    def __init__(
        self,
        table: HandlerTable[D],
        deps: D,
        spec: QueueSpec,
        concurrency: int,
        max_attempts: int | None,
        leases: PartitionLeases | None = None,
    ) -> None:
        self.table = table
        self.leases = leases
        self.deps = deps
        self.spec = spec
        self.concurrency = concurrency
        self.max_attempts = max_attempts

    async def __call__(self, event: Event, delivery: Delivery) -> None:
        entry = self.table.entry(type(event))
        if entry is None:
            raise Reject(
                f"queue {self.table.queue} has no handler for {event.type}: a binding left by "
                "another version (unbind it), or an entry missing from its handler table"
            )
        await entry.handler(self.deps, event, delivery)

    def key(self, event: Event) -> str | None:
        entry = self.table.entry(type(event))
        if entry is None:
            return None
        if entry.deps_key is not None:
            return entry.deps_key(self.deps, event)
        return entry.key(event) if entry.key is not None else None
