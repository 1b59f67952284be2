"""Which partitions of a partitioned queue each replica consumes, shared out through PostgreSQL.

A partitioned queue (``shared.bus``, ``QueueSpec.partitions``) has one active consumer per
partition (single active consumer): the broker makes the first consumer of a partition the
active one and the others stand by. That keeps each customer's events in order, but alone it
would give every partition to the replica that started first. So each replica consumes only the
partitions it holds here, and the holders balance themselves:

- a replica is present while it holds a session advisory lock of the service's *replica* class
  on its own connection (a crash or a lost connection releases it, and every partition it held);
- it holds partition ``i`` with a session advisory lock of the *partition* class, key ``i``;
- every ``interval`` each replica reads ``pg_locks``: who is present and who holds what. It
  gives up partitions beyond its share (``ceil(N / replicas)``, or more than one above the least
  loaded replica), first stopping its consumer there and letting the messages in flight finish;
  the least loaded ones take the free partitions up to their share, and start consuming them.

Handing a partition over never reorders it: the one giving it up stops before it unlocks, and a
replica that consumes a partition someone else still consumes (a lock lost with its connection)
stands by on the broker until the other stops. The keys are per schema and service, so services
and tests on one database do not meet.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import asyncpg

from shared.bus import Consumer, partition

log = logging.getLogger("mensajero.partitions")

_HOLDERS = """
SELECT pid, classid::int8 = (hashtext($1)::int8 & 4294967295) AS present, objid::int8 AS key
FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 2 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid::int8 IN (hashtext($1)::int8 & 4294967295, hashtext($2)::int8 & 4294967295)
"""


def lock_classes(schema: str, service: str) -> tuple[str, str]:
    """The advisory lock classes (hashed) of ``service``'s replicas and partitions."""
    return f"{schema}.{service}.replica", f"{schema}.{service}.partition"


async def partition_owners(conn: asyncpg.Connection, schema: str, service: str) -> dict[int, int]:
    """Who holds each partition now (partition -> backend pid), for a look from outside."""
    rows = await conn.fetch(_HOLDERS, *lock_classes(schema, service))
    return {row["key"]: row["pid"] for row in rows if not row["present"]}


@dataclass(frozen=True)
class Holders:
    """What ``pg_locks`` says now: the replicas present (by backend pid) and who holds what."""

    me: int
    present: frozenset[int]
    owners: dict[int, int]  # partition -> pid

    def held_by(self, pid: int) -> set[int]:
        return {index for index, owner in self.owners.items() if owner == pid}

    def least_of_others(self) -> int | None:
        loads = [len(self.held_by(pid)) for pid in self.present if pid != self.me]
        return min(loads) if loads else None


def to_release(holders: Holders, partitions: int) -> list[int]:
    """The partitions this replica gives up now (its highest ones)."""
    mine = sorted(holders.held_by(holders.me))
    share = math.ceil(partitions / max(len(holders.present), 1))
    extra = len(mine) - share
    others = holders.least_of_others()
    if extra <= 0 and others is not None and len(mine) > others + 1:
        extra = 1
    return mine[len(mine) - extra :] if extra > 0 else []


def to_take(holders: Holders, partitions: int) -> list[int]:
    """The free partitions this replica may try to take now, in order, up to its share."""
    mine = holders.held_by(holders.me)
    others = holders.least_of_others()
    if others is not None and len(mine) > others:
        return []  # a less loaded replica takes them
    share = math.ceil(partitions / max(len(holders.present), 1))
    free = [index for index in range(partitions) if index not in holders.owners]
    return free[: max(share - len(mine), 0)]


class PartitionLeases:
    """A replica's share of ``service``'s partitions: a resource (its own database connection,
    holding the locks) and the loop step :meth:`rebalance`; the runner attaches the consumer."""

    def __init__(
        self, database_url: str, schema: str, service: str, partitions: int, *, grace: float
    ) -> None:
        self.database_url = database_url
        self.service = service
        self.partitions = partitions
        self.grace = grace
        self._replica_class, self._partition_class = lock_classes(schema, service)
        self._conn: asyncpg.Connection | None = None
        self._consumer: Consumer | None = None
        self.held: set[int] = set()

    async def start(self) -> None:
        self._conn = await asyncpg.connect(
            self.database_url, server_settings={"application_name": f"mensajero-{self.service}"}
        )
        await self._conn.execute(
            "SELECT pg_advisory_lock(hashtext($1), pg_backend_pid())", self._replica_class
        )

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()  # every lock goes with the session
            self._conn = None
        self.held.clear()

    def attach(self, consumer: Consumer) -> None:
        self._consumer = consumer

    async def holders(self) -> Holders:
        conn = self._connection()
        rows = await conn.fetch(_HOLDERS, self._replica_class, self._partition_class)
        present = {row["pid"] for row in rows if row["present"]}
        owners = {row["key"]: row["pid"] for row in rows if not row["present"]}
        return Holders(conn.get_server_pid(), frozenset(present), owners)

    async def rebalance(self) -> None:
        """One round (see the module): give up what is beyond the share, take free ones."""
        if self._consumer is None:
            return
        if self._conn is None or self._conn.is_closed():
            await self._stop_all()
            await self.start()  # present again, holding nothing
        try:
            holders = await self.holders()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await self._stop_all()  # the locks may be gone with the connection
            raise
        for index in to_release(holders, self.partitions):
            await self._consumer.pause(partition(self.service, index), grace=self.grace)
            await self._connection().execute(
                "SELECT pg_advisory_unlock(hashtext($1), $2)", self._partition_class, index
            )
            self.held.discard(index)
            log.info("partition released: %s", partition(self.service, index))
        for index in to_take(holders, self.partitions):
            taken = await self._connection().fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1), $2)", self._partition_class, index
            )
            if taken:
                self.held.add(index)
                await self._consumer.resume(partition(self.service, index))
                log.info("partition taken: %s", partition(self.service, index))

    async def _stop_all(self) -> None:
        """Stop consuming every partition and drop the connection (the next round opens one)."""
        if self._consumer is not None:
            for index in sorted(self.held):
                await self._consumer.pause(partition(self.service, index), grace=self.grace)
        self.held.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("partition leases are not started")
        return self._conn
