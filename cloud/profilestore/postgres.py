"""PostgreSQL for the profile store: any number of stateless server processes on one database.

Why the advisory lock. The change cursor is "the last seq applied", and a pull returns ``seq > cursor``. If
two transactions took seq 41 and 42 and 42 committed first, a pull in between would return 42, the gateway
would store cursor 42, and 41 (committed a moment later) would never be pulled: a skipped change. So every
transaction that writes the change log first takes ``pg_advisory_xact_lock(CHANGES)``, and only then takes
its seq: seqs are handed out in commit order, and a committed seq N means every seq below N is committed
(PostgreSQL makes a commit visible before it releases the transaction's locks). The same lock serialises the
read-modify-write of consents (latest wins) across replicas. Pushed events get the same treatment with their
own lock (``EVENTS``), so that the admin event listing, paged by receive order, never skips either. The lock
is transaction-scoped: a crashed replica cannot leave it held.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from profilestore.schema import SCHEMA_VERSION, SchemaTooNewError, statements
from profilestore.sqldb import Connection, Lane
from profilestore.sqlstore import SqlStorage
from profilestore.storage import StorageUnavailableError

# Advisory lock keys (one 64-bit space per database, shared with any other application on it): fixed,
# arbitrary values spelling "edgeps" plus a lane number.
LOCK_KEYS: Final = {Lane.CHANGES: 0x65646765_70730001, Lane.EVENTS: 0x65646765_70730002}
_MIGRATION_LOCK: Final = 0x65646765_70730000
# Connections per server process: requests beyond wait for one (aiohttp keeps accepting meanwhile).
_POOL_MIN: Final = 1
_POOL_MAX: Final = 10
# Planner settings of every connection. random_page_cost 1.1 (PostgreSQL's advice for SSDs, and right for a
# log whose recent part is in memory) instead of 4.0: with 4.0, for a store holding a large share of the log
# (a flagship store, a small chain), the planner prefers walking the primary key through every other store's
# changes after the cursor to fetching the store's own rows through changes_store, and reads ~50x the rows it
# returns, 3-6x slower (docs/profile-store.md, "Pull cost"; tests/profilestore/test_scoping_log.py).
SERVER_SETTINGS: Final = {"random_page_cost": "1.1"}
# Seconds to connect, and for one statement, before the request is answered 503.
_CONNECT_TIMEOUT_S: Final = 10.0
_COMMAND_TIMEOUT_S: Final = 30.0
_ROWCOUNT: Final = re.compile(r"(\d+)$")

# Failures of the server or the network (the request may be retried), as opposed to bugs in our SQL.
_UNAVAILABLE: Final = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    asyncpg.OperatorInterventionError,  # the server shutting down, crashed, or killing our backend
    asyncpg.InternalClientError,  # a pooled connection left half-broken by the server closing it
)


class _Conn:
    """``Connection`` over one asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection | PoolConnectionProxy) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status = await self._conn.execute(sql, *args)
        match = _ROWCOUNT.search(status)
        return int(match.group(1)) if match else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return [tuple(row) for row in await self._conn.fetch(sql, *args)]

    async def fetch_any(self, sql: str, values: Sequence[str], pg_type: str) -> list[Sequence[Any]]:
        rows = await self._conn.fetch(sql.replace("{ANY}", f"= ANY($1::{pg_type}[])"), list(values))
        return [tuple(row) for row in rows]


class PostgresDatabase:
    """``profilestore.sqlstore.Database`` on a PostgreSQL connection pool."""

    def __init__(self, pool: asyncpg.Pool, instance: str) -> None:
        self._pool = pool
        self._instance = instance

    @property
    def instance(self) -> str:
        return self._instance

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy]:
        try:
            conn = await self._pool.acquire()
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            # Whatever the server says while we (re)connect (starting up, not accepting connections,
            # the database gone...) means the same to a client: not now.
            raise StorageUnavailableError(f"postgresql: cannot connect: {exc}") from exc
        try:
            yield conn
        finally:
            await self._pool.release(conn)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Connection]:
        try:
            async with (
                self._connection() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield _Conn(conn)
        except _UNAVAILABLE as exc:
            raise StorageUnavailableError(f"postgresql: {exc}") from exc

    @asynccontextmanager
    async def writing(self, *lanes: Lane) -> AsyncIterator[Connection]:
        try:
            async with self._connection() as conn, conn.transaction():
                # Always in Lane order, so two transactions holding both lanes cannot deadlock.
                for lane in sorted(set(lanes), key=lambda item: LOCK_KEYS[item]):
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEYS[lane])
                yield _Conn(conn)
        except _UNAVAILABLE as exc:
            raise StorageUnavailableError(f"postgresql: {exc}") from exc

    async def ping(self) -> None:
        async with self.reading() as conn:
            await conn.fetch("SELECT 1")


async def _migrate(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        # Replicas starting together: one migrates, the others wait and then find nothing to do.
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = await conn.fetchval("SELECT MAX(version) FROM schema_version") or 0
            SchemaTooNewError.check(version)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                async with conn.transaction():
                    for statement in statements(step, "postgresql"):
                        await conn.execute(statement)
                    if step == 1:
                        await conn.execute(
                            "INSERT INTO meta (name, value) VALUES ('instance', $1)", secrets.token_hex(8)
                        )
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", step)
            return str(await conn.fetchval("SELECT value FROM meta WHERE name = 'instance'"))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


@asynccontextmanager
async def open_postgres(dsn: str) -> AsyncIterator[SqlStorage]:
    """The storage in the PostgreSQL database at ``dsn`` (schema created or migrated on open)."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=_POOL_MIN,
            max_size=_POOL_MAX,
            timeout=_CONNECT_TIMEOUT_S,
            command_timeout=_COMMAND_TIMEOUT_S,
            server_settings=SERVER_SETTINGS,
        )
    except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
        raise StorageUnavailableError(f"postgresql: cannot connect: {exc}") from exc
    try:
        instance = await _migrate(pool)
        yield SqlStorage(PostgresDatabase(pool, instance))
    finally:
        await pool.close()
