"""PostgreSQL on asyncpg: a pool per service, one schema per service, versioned migrations.

Each service keeps its SQL in ``<service>/migrations/NNNN_name.sql``. :func:`migrate` applies the
ones not yet recorded in ``<schema>.schema_migrations``, in order, each in its own transaction,
under an advisory lock so that replicas starting together do not race.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from shared.logs import describe

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What handlers receive: a pooled connection or a plain one.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    Connection = asyncpg.Connection
    Pool = asyncpg.Pool

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")

# Tables every schema gets: the inbox (events already handled) and the outbox (events to
# publish, written in the same transaction as the state change that produced them); and the
# timers, below.
_CORE_SQL = """
CREATE TABLE IF NOT EXISTS inbox (
    event_id    text PRIMARY KEY,
    handled_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS outbox (
    id              bigserial PRIMARY KEY,
    source_id       text NOT NULL,
    event_id        text NOT NULL UNIQUE,
    event_type      text NOT NULL,
    body            bytea NOT NULL,
    correlation_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_source ON outbox (source_id);
"""
# The durable timers (shared.timers): one per subject and kind, fired once across replicas.
# Created after the service's own migrations: handoff's first one made this table before it was
# shared (its 0002 gave it this shape), and a table created here first would make it fail.
_TIMERS_SQL = """
CREATE TABLE IF NOT EXISTS timers (
    id        bigserial PRIMARY KEY,
    subject   text NOT NULL,
    kind      text NOT NULL,
    due_at    timestamptz NOT NULL,
    fired_at  timestamptz,
    UNIQUE (subject, kind)
);
CREATE INDEX IF NOT EXISTS timers_due ON timers (due_at) WHERE fired_at IS NULL;
"""


class DatabaseUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"DB_SCHEMA must be a lowercase SQL identifier, got {schema!r}")
    return schema


def load_migrations(package: str) -> list[Migration]:
    """The ``.sql`` files of ``<package>.migrations``, ordered by their number."""
    found: list[Migration] = []
    folder = resources.files(package).joinpath("migrations")
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{package}: two migrations share a number: {versions}")
    return found


async def create_pool(
    url: str, schema: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0
) -> Pool:
    """A pool whose connections see ``schema`` first; creates the schema when missing."""
    check_schema_name(schema)
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {_redact(url)}: {describe(error)}"
        ) from error
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except asyncpg.UniqueViolationError:
        pass  # created concurrently by a replica
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        server_settings={"search_path": schema, "application_name": f"mensajero-{schema}"},
    )
    assert pool is not None
    return pool


async def migrate(pool: Pool, schema: str, migrations: list[Migration]) -> list[int]:
    """Apply what is missing; returns the versions applied now."""
    applied_now: list[int] = []
    async with pool.acquire() as conn, conn.transaction():
        # One replica migrates at a time; the others wait and then find nothing to do.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(_CORE_SQL)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.version)
        await conn.execute(_TIMERS_SQL)
    return applied_now


# Deleted per statement: short transactions that never hold many row locks at once.
PRUNE_BATCH = 5_000
# Each takes $1 (retention in days, float) and $2 (batch size); the table's own clock column.
_CORE_PRUNING = (
    "DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox"
    " WHERE handled_at < now() - $1 * interval '1 day' LIMIT $2))",
    "DELETE FROM outbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM outbox"
    " WHERE published_at < now() - $1 * interval '1 day' LIMIT $2))",
    "DELETE FROM timers WHERE ctid = ANY(ARRAY(SELECT ctid FROM timers"
    " WHERE fired_at < now() - $1 * interval '1 day' LIMIT $2))",
)


async def prune(pool: Pool, days: float, extra: Sequence[str] = ()) -> int:
    """Delete what no redelivery can need any more; how many rows went.

    Handled event ids, published outbox rows and fired timers older than ``days`` (an
    unpublished row, a pending timer, is never deleted), and whatever the service's ``extra``
    statements select (same parameters).
    """
    deleted = 0
    for statement in (*_CORE_PRUNING, *extra):
        while True:
            status = await pool.execute(statement, float(days), PRUNE_BATCH)
            count = int(status.rsplit(" ", 1)[-1])  # "DELETE <n>"
            deleted += count
            if count < PRUNE_BATCH:
                break
    return deleted


async def ping(pool: Pool) -> bool:
    try:
        async with asyncio.timeout(2.0):
            await pool.fetchval("SELECT 1")
    except Exception:
        return False
    return True


async def drop_schema(url: str, schema: str) -> None:
    """Remove a schema and everything in it (tests)."""
    check_schema_name(schema)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"
