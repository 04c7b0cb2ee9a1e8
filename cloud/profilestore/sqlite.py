"""SQLite for the profile store (demos, pilots): one file, WAL, one writer connection and one reader.

Writes are serialised by one lock and ``BEGIN IMMEDIATE``, so sequence numbers are taken in commit order.
Reads use their own connection: under WAL it sees only committed data, never a write still in progress.
Meant for one server process; several replicas need PostgreSQL.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import aiosqlite

from profilestore.schema import SCHEMA_VERSION, SchemaTooNewError, statements
from profilestore.sqldb import Connection, Lane
from profilestore.sqlstore import SqlStorage
from profilestore.storage import StorageUnavailableError

# How long a statement waits for another process's lock before failing (a second process on the file).
_BUSY_TIMEOUT_MS: Final = 5000
# SQLite's bound on parameters in one statement is 32766; chunks stay well below it.
_IN_CHUNK: Final = 500
_PLACEHOLDER: Final = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=256)
def _sqlite_sql(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


class _Conn:
    """``Connection`` over one aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._conn.execute(_sqlite_sql(sql), args) as cursor:
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(_sqlite_sql(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return list(await self._conn.execute_fetchall(_sqlite_sql(sql), args))

    async def fetch_any(self, sql: str, values: Sequence[str], pg_type: str) -> list[Sequence[Any]]:
        del pg_type  # SQLite compares text as text
        rows: list[Sequence[Any]] = []
        for start in range(0, len(values), _IN_CHUNK):
            chunk = values[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows += await self._conn.execute_fetchall(sql.replace("{ANY}", f"IN ({marks})"), chunk)
        return rows


class SqliteDatabase:
    """``profilestore.sqlstore.Database`` on a SQLite file."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, instance: str) -> None:
        self._writer = _Conn(writer)
        self._reader = _Conn(reader)
        self._raw_writer = writer
        self._raw_reader = reader
        self._instance = instance
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()  # one reader connection: one snapshot at a time

    @property
    def instance(self) -> str:
        return self._instance

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Connection]:
        async with self._read_lock:
            try:
                await self._raw_reader.execute("BEGIN")
                try:
                    yield self._reader
                finally:
                    await self._raw_reader.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise StorageUnavailableError(f"sqlite: {exc}") from exc

    @asynccontextmanager
    async def writing(self, *lanes: Lane) -> AsyncIterator[Connection]:
        del lanes  # one writer: every write is serialised anyway
        async with self._write_lock:
            try:
                await self._raw_writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                except BaseException:
                    await self._raw_writer.execute("ROLLBACK")
                    raise
                await self._raw_writer.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._raw_writer.in_transaction:
                    await self._raw_writer.execute("ROLLBACK")
                raise StorageUnavailableError(f"sqlite: {exc}") from exc

    async def ping(self) -> None:
        async with self.reading() as conn:
            await conn.fetch("SELECT 1")


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return conn


async def _migrate(conn: aiosqlite.Connection) -> str:
    await conn.execute("PRAGMA journal_mode = WAL")
    # An answered push is a promise that the events are kept: FULL syncs the WAL on every commit.
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute("BEGIN IMMEDIATE")
    try:
        version = int((await conn.execute_fetchall("PRAGMA user_version"))[0][0])  # type: ignore[index]
        SchemaTooNewError.check(version)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in statements(step, "sqlite"):
                await conn.execute(statement)
            if step == 1:
                await conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('instance', ?)", (secrets.token_hex(8),)
                )
            await conn.execute(f"PRAGMA user_version = {step}")
        rows = await conn.execute_fetchall("SELECT value FROM meta WHERE name = 'instance'")
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    return str(next(iter(rows))[0])


@asynccontextmanager
async def open_sqlite(path: Path) -> AsyncIterator[SqlStorage]:
    """The storage in the SQLite file at ``path`` (created if missing; its folder must exist)."""
    if not path.parent.is_dir():
        raise StorageUnavailableError(f"sqlite: folder {path.parent} does not exist")
    try:
        writer = await _connect(path)
    except sqlite3.Error as exc:
        raise StorageUnavailableError(f"sqlite: cannot open {path}: {exc}") from exc
    try:
        try:
            instance = await _migrate(writer)
            reader = await _connect(path)
        except sqlite3.DatabaseError as exc:  # not a database, locked for too long, a read-only file...
            raise StorageUnavailableError(f"sqlite: cannot use {path}: {exc}") from exc
        try:
            yield SqlStorage(SqliteDatabase(writer, reader, instance))
        finally:
            await reader.close()
    finally:
        await writer.close()
